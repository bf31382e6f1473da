"""The health check of ``metai-node serve``: ``GET http://127.0.0.1:<port>/health``, and its client.

The answer is one JSON object (format ``metai-node-health`` version 1)::

    {"format": "metai-node-health", "version": 1, "status": "ok", "phase": "running",
     "node_dir": "/srv/metai-node", "hospital": "0x...", "superlink": "10.77.0.2:9443", "problems": [],
     "children": {"signer": {"running": true, "pid": 4242, "restarts": 0, "since": "...", "ready": true,
                             "last_exit": null, "answering": true},
                  "supernode": {"running": true, "pid": 4250, "restarts": 1, "since": "...", "ready": true,
                                "node_id": 7310468361925312045,
                                "last_exit": {"at": "...", "pid": 4243, "code": -9, "reason": "killed by SIGKILL"},
                                "superlink_reachable": true}}}

with HTTP 200 when ``status`` is ``ok`` (every child running, ready and passing its probe) and
503 otherwise (``status`` ``unhealthy``, ``problems`` saying what is wrong; ``phase``
``starting`` or ``stopping`` while serve starts or stops). The server binds 127.0.0.1 only and
answers nothing but ``GET /health``.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from node.errors import NodeConfigError, NodeError

__all__ = ["HEALTH_FORMAT", "HealthServer", "HealthUnavailable", "read_health"]

HEALTH_FORMAT = "metai-node-health"
HEALTH_VERSION = 1
HOST = "127.0.0.1"
PATH = "/health"

Report = Callable[[], dict[str, Any]]


class HealthUnavailable(NodeError, ConnectionError):
    """Nothing answers the health check on its port, or the answer is not serve's."""


class HealthServer:
    """Serves ``report()`` (a dict with ``status``) at ``GET /health`` on 127.0.0.1:``port``, from a thread.

    Raises:
        NodeConfigError: the port is taken.
    """

    def __init__(self, port: int, report: Report) -> None:
        handler = _handler(report)
        try:
            self._server = ThreadingHTTPServer((HOST, port), handler)
        except OSError as exc:
            raise NodeConfigError(f"the health check cannot listen on {HOST}:{port} ({exc.strerror}); another "
                                  "process has the port: set METAI_NODE_HEALTH_PORT to a free one") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Answer requests from a thread of its own."""
        self._thread.start()

    def close(self) -> None:
        """Stop answering and free the port."""
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def _handler(report: Report) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != PATH:
                self._send(404, {"error": f"not found; the health check is GET {PATH}"})
                return
            body = {"format": HEALTH_FORMAT, "version": HEALTH_VERSION, **report()}
            self._send(200 if body.get("status") == "ok" else 503, body)

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = (json.dumps(body, indent=2) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a monitor polling every few seconds would fill serve's log

    return Handler


def read_health(port: int, timeout: float = 20.0) -> tuple[int, dict[str, Any]]:
    """Ask serve's health check on 127.0.0.1:``port``: the HTTP status and the JSON answer.

    Raises:
        HealthUnavailable: nothing answers there, or the answer is not serve's health JSON.
    """
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", PATH)
        response = connection.getresponse()
        raw = response.read()
    except OSError as exc:
        what = exc.strerror or str(exc) or type(exc).__name__
        raise HealthUnavailable(f"no health check answers on {HOST}:{port} ({what.lower()}); is `metai-node serve` "
                                "running for this node? check METAI_NODE_HEALTH_PORT") from None
    finally:
        connection.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("format") != HEALTH_FORMAT:
        raise HealthUnavailable(f"{HOST}:{port} answered GET {PATH} with HTTP {response.status} but not with "
                                f"serve's health report; is METAI_NODE_HEALTH_PORT the port of `metai-node serve`?")
    return response.status, body
