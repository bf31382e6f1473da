"""The Fleet gateway: the one door of the coordinator host that hospitals' SuperNodes use.

In Flower 1.41 a SuperLink serves its Fleet API (``/v1/fleet/...``, what SuperNodes call), its
Control API (``/v1/control/...``: submit runs, register SuperNodes; no credentials) and its
Runtime API (``/v1/runtime/...``: where ServerApps fetch their work) on one port. The managed
SuperLink therefore listens on 127.0.0.1 only, and this gateway listens on the coordinator's
public address with the coordinator's server certificate (TLS, issued by the consortium CA). It
forwards ``/v1/fleet/<method>`` and ``/health`` to the SuperLink over TLS on loopback and answers
404 to every other path without forwarding it. Paths are matched as they arrive, before any
decoding: a percent-escape or a dot segment (``/v1/fleet/../control/...``) is refused, so no
spelling of a path reaches another API.

Forwarding keeps the request's method, headers and body (SuperNode authentication is signed
headers, which pass unchanged) and streams bodies both ways; it drops hop-by-hop headers
(RFC 9110, section 7.6.1) and forwarding headers the client sent, and says who the client was in
``X-Forwarded-For``. A SuperLink that does not answer gives 502 (504 on a time-out); a SuperNode
retries both, so it rides out a restart of the SuperLink.

It runs as a process of its own (``python -m coordinator.federated.gateway``), supervised by the
service (:mod:`coordinator.federated.managed`): model updates pass through it, and encrypting
and copying them in the service's process would take the interpreter's lock from the API's
requests (as the consent relay did before it had its own process); a failure of the
internet-facing part also stays apart from the API.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import ssl
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx

__all__ = ["FleetGateway", "allowed", "main"]

_log = logging.getLogger("metai.coordinator.gateway")
_FLEET = re.compile(r"/v1/fleet/[A-Za-z0-9_-]+")
#: Hop-by-hop headers (RFC 9110, 7.6.1) and what only a proxy may set; never forwarded either way.
_HOP = frozenset({b"connection", b"proxy-connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding",
                  b"upgrade", b"proxy-authenticate", b"proxy-authorization", b"host"})
_FORWARDING = frozenset({b"forwarded", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host",
                         b"x-forwarded-port", b"x-real-ip"})

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def allowed(path: str, raw_path: bytes | None) -> bool:
    """Whether a request for ``path`` (``raw_path`` as it arrived) may go to the SuperLink: Fleet or health only."""
    if raw_path is not None and raw_path != path.encode("ascii", "replace"):
        return False  # percent-escapes: whatever they spell, a Fleet method name needs none
    return path == "/health" or _FLEET.fullmatch(path) is not None


class FleetGateway:
    """The ASGI app: forward allowed requests to the SuperLink at ``upstream`` (``https://127.0.0.1:PORT``)."""

    def __init__(self, upstream: str, verify: ssl.SSLContext | bool, *, timeout: float = 300.0) -> None:
        self.upstream = upstream.rstrip("/")
        self._verify = verify
        self._timeout = httpx.Timeout(timeout, connect=10.0, pool=30.0)
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._client = httpx.AsyncClient(verify=self._verify, timeout=self._timeout, trust_env=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        client = scope.get("client")
        if not allowed(path, scope.get("raw_path")):
            _log.info("refused %s %s from %s", scope["method"], path[:200], client[0] if client else "?")
            await _answer(send, 404, b"not found\n")
            return
        assert self._client is not None  # the lifespan made it
        received = [(k.lower(), v) for k, v in scope["headers"]]
        headers = [(k, v) for k, v in received if k not in _HOP | _FORWARDING]
        headers += [(b"x-forwarded-for", (client[0] if client else "unknown").encode()),
                    (b"x-forwarded-proto", b"https")]
        # A body is sent on only if the client announced one (with its length, or chunked): a GET stays bodiless.
        body = any(k == b"transfer-encoding" or (k == b"content-length" and v.strip() != b"0") for k, v in received)
        query = scope.get("query_string") or b""
        url = f"{self.upstream}{path}" + (f"?{query.decode('latin-1')}" if query else "")
        request = self._client.build_request(scope["method"], url, headers=headers,
                                             content=_body(receive) if body else None)
        try:
            response = await self._client.send(request, stream=True)
        except ConnectionAbortedError:  # the client left while sending its body: nobody to answer
            return
        except httpx.TimeoutException as exc:
            _log.warning("the SuperLink did not answer %s in time: %s", path, type(exc).__name__)
            await _answer(send, 504, b"the SuperLink did not answer in time\n")
            return
        except httpx.TransportError as exc:
            _log.warning("the SuperLink cannot be reached for %s: %s: %s", path, type(exc).__name__, exc)
            await _answer(send, 502, b"the SuperLink cannot be reached\n")
            return
        try:
            await send({"type": "http.response.start", "status": response.status_code,
                        "headers": [(k, v) for k, v in response.headers.raw if k.lower() not in _HOP]})
            async for chunk in response.aiter_raw():  # as it came: no decoding, so content-encoding stays true
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:  # a failure midway propagates, and the server drops the connection: the client sees it cut
            await response.aclose()


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("the client went away before its request body ended")
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            return


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def main(argv: list[str] | None = None) -> int:
    """Serve the gateway until SIGTERM (``python -m coordinator.federated.gateway --help``)."""
    import uvicorn

    from coordinator.core import logs
    from coordinator.federated.processes import die_with_parent

    parser = argparse.ArgumentParser(prog="python -m coordinator.federated.gateway", description=__doc__.split("\n")[0])
    parser.add_argument("--host", required=True, help="address to listen on (the coordinator's public address)")
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument("--cert", type=Path, required=True, help="server certificate (PEM) hospitals verify")
    parser.add_argument("--key", type=Path, required=True, help="its private key (PEM)")
    parser.add_argument("--upstream-port", type=int, required=True, help="the SuperLink's port on 127.0.0.1")
    parser.add_argument("--upstream-ca", type=Path, required=True, help="CA certificate of the SuperLink's TLS")
    parser.add_argument("--parent", type=int, help="stop when this process (the service) ends")
    parser.add_argument("--log-json", action="store_true", help="log JSON lines instead of text")
    args = parser.parse_args(argv)
    if args.parent is not None and not die_with_parent(args.parent):
        return 0
    writer = logs.configure(args.log_json)
    try:
        verify = ssl.create_default_context(cafile=str(args.upstream_ca))
        gateway = FleetGateway(f"https://127.0.0.1:{args.upstream_port}", verify)
        _log.info("Fleet gateway on %s:%d forwarding /v1/fleet/* and /health to 127.0.0.1:%d (pid %d)",
                  args.host, args.port, args.upstream_port, os.getpid())
        uvicorn.run(gateway, host=args.host, port=args.port, ssl_certfile=str(args.cert), ssl_keyfile=str(args.key),
                    log_config=None, access_log=False, server_header=False, proxy_headers=False, lifespan="on",
                    timeout_graceful_shutdown=3)
    finally:
        writer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
