"""`metai-node serve` against a real TLS SuperLink with SuperNode authentication: it starts, answers its health
check, restarts a killed SuperNode, stops on SIGTERM with nothing left, and names a key the SuperLink refuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from node.procs import start_time
from tests.node.serve_fixture import SecureLink, secure_link, serve_env, short_dir, start_serve  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def _children(body: dict) -> dict:  # type: ignore[type-arg]
    return body["children"]


def test_serve_activates_the_node_and_answers_health(make_node, secure_link: SecureLink, short_dir: Path,  # type: ignore[no-untyped-def]
                                                     start_serve) -> None:
    node = make_node("Serve Hospital")
    secure_link.register(node.dir, "serve-hospital")
    serve = start_serve(serve_env(node.dir, secure_link, short_dir))
    body = serve.wait_health(200)
    signer, supernode = _children(body)["signer"], _children(body)["supernode"]
    assert body["status"] == "ok" and body["phase"] == "running" and body["problems"] == []
    assert body["hospital"] == node.address
    assert (signer["running"], signer["ready"], signer["answering"], signer["restarts"]) == (True, True, True, 0)
    assert (supernode["running"], supernode["ready"], supernode["superlink_reachable"]) == (True, True, True)
    assert supernode["node_id"] == secure_link.activations()[-1]  # the id the SuperLink activated
    assert "is SuperNode" in serve.stdout() and serve.stderr() == ""
    env = {**serve.env}
    done = subprocess.run([sys.executable, "-m", "node.cli", "health"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"node id {supernode['node_id']}" in done.stdout
    os.kill(serve.proc.pid, signal.SIGTERM)
    assert serve.wait_exit() == 0, serve.stderr()
    for child in (signer, supernode):
        assert start_time(child["pid"]) is None
