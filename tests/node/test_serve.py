"""`metai-node serve` against a real TLS SuperLink with SuperNode authentication: it starts, answers its health
check, restarts a killed SuperNode, stops on SIGTERM with nothing left, and names a key the SuperLink refuses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from deploy.process import free_port
from node.procs import start_time
from tests.node.serve_fixture import SecureLink, serve_env

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
    assert body["status"] == "ok"
    assert body["phase"] == "running"
    assert body["problems"] == []
    assert body["hospital"] == node.address
    assert (signer["running"], signer["ready"], signer["answering"], signer["restarts"]) == (True, True, True, 0)
    assert (supernode["running"], supernode["ready"], supernode["superlink_reachable"]) == (True, True, True)
    assert supernode["node_id"] == secure_link.activations()[-1]  # the id the SuperLink activated
    assert "is SuperNode" in serve.stdout()
    assert serve.stderr() == ""
    env = {**serve.env}
    done = subprocess.run([sys.executable, "-m", "node.cli", "health"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"node id {supernode['node_id']}" in done.stdout
    os.kill(serve.proc.pid, signal.SIGTERM)
    assert serve.wait_exit() == 0, serve.stderr()
    for child in (signer, supernode):
        assert start_time(child["pid"]) is None


def test_a_killed_supernode_is_restarted_at_once_and_health_recovers(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    node = make_node("Restart Hospital")
    secure_link.register(node.dir, "restart-hospital")
    serve = start_serve(serve_env(node.dir, secure_link, short_dir))
    first = _children(serve.wait_health(200))["supernode"]
    os.kill(first["pid"], signal.SIGKILL)
    body = serve.wait_health(200, restarted=lambda b: _children(b)["supernode"]["restarts"] >= 1)
    again = _children(body)["supernode"]
    assert again["pid"] != first["pid"]
    assert start_time(first["pid"]) is None
    assert again["node_id"] == first["node_id"]
    assert again["last_exit"]["reason"] == "killed by SIGKILL"
    assert again["last_exit"]["pid"] == first["pid"]
    # The SuperLink was told at once that the killed process is gone, so the first restart was admitted
    # (without that it refuses the key for two missed heartbeats, 60 s, and serve would try again and again).
    assert again["restarts"] == 1
    assert secure_link.activations().count(first["node_id"]) == 2
    serve_log = (serve.log_dir / "serve.log").read_text()
    assert f"told the SuperLink that node {first['node_id']} of the previous SuperNode process is offline" in serve_log
    assert f"supernode (pid {first['pid']}) exited after" in serve_log
    assert "killed by SIGKILL" in serve_log
    assert _children(body)["signer"]["restarts"] == 0


def test_sigterm_stops_every_child_removes_the_socket_and_exits_0(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    node = make_node("Stop Hospital")
    secure_link.register(node.dir, "stop-hospital")
    serve = start_serve(serve_env(node.dir, secure_link, short_dir))
    children = _children(serve.wait_health(200))
    family = _descendants(serve.proc.pid)  # the SuperNode's flower-superexec too
    assert {children["signer"]["pid"], children["supernode"]["pid"]} <= set(family)
    socket_path = short_dir / "signer" / "agent.sock"
    assert socket_path.exists()
    os.kill(serve.proc.pid, signal.SIGTERM)
    assert serve.wait_exit() == 0, serve.stderr()
    assert [pid for pid, started in family.items() if start_time(pid) == started] == []
    assert not socket_path.exists()
    assert not socket_path.parent.exists()
    assert serve.stdout().splitlines()[-1] == "metai-node serve: stopped"
    assert serve.stderr() == ""
    state = (short_dir / "serve.json").read_text()
    assert '"clean": true' in state


def test_a_key_the_superlink_does_not_know_stops_serve_with_one_line(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    from node.federation_key import federation_key

    node = make_node("Unknown Hospital")
    key = federation_key(node.dir)  # made, never registered
    serve = start_serve(serve_env(node.dir, secure_link, short_dir))
    assert serve.wait_exit() == 1
    assert serve.stderr() == (
        f"error: the SuperLink at {secure_link.superlink.fleet_address} refused to activate this node's SuperNode "
        f"key {key.private_key}: it is not registered there; register the public key with the coordinator operator "
        "(`metai-node federation-key` prints it). (If it is, another SuperNode with this key is online, or was "
        "killed less than a minute ago.)\n")
    assert "Failed to activate SuperNode" in (serve.log_dir / "supernode.log").read_text()
    assert "No SuperNode found with the given public key" in secure_link.superlink.log_file.read_text()
    assert _left_running(short_dir) == []


def _descendants(pid: int) -> dict[int, int]:
    """PID -> start time of every live descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(entry.name))
    found, todo = {}, list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        if (started := start_time(child)) is not None:
            found[child] = started
        todo += parents.get(child, [])
    return found


def _left_running(runtime: Path) -> list[int]:
    """Children serve recorded in its state file that still run."""
    import json

    state = json.loads((runtime / "serve.json").read_text())
    return [pid for pid, started in state["children"].values() if start_time(pid) == started]


def test_a_hung_signing_agent_makes_health_503_and_the_health_command_exit_1(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    node = make_node("Hung Hospital")
    secure_link.register(node.dir, "hung-hospital")
    serve = start_serve(serve_env(node.dir, secure_link, short_dir))
    signer = _children(serve.wait_health(200))["signer"]
    os.kill(signer["pid"], signal.SIGSTOP)  # alive, listening (the kernel accepts), answering nothing
    try:
        status, body = serve.health()
        done = subprocess.run([sys.executable, "-m", "node.cli", "health"], env=serve.env, capture_output=True,
                              text=True, timeout=120)
    finally:
        os.kill(signer["pid"], signal.SIGCONT)
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["problems"] == ["signer: its probe did not answer within 8 s"]
    assert (_children(body)["signer"]["running"], _children(body)["signer"]["pid"]) == (True, signer["pid"])
    assert done.returncode == 1
    assert done.stderr == "error: serve is unhealthy: signer: its probe did not answer within 8 s\n"
    assert done.stdout.startswith("signer: ready; pid ")
    assert serve.wait_health(200)["children"]["signer"]["answering"] is True  # answering again, not restarted


def test_a_second_serve_of_the_same_node_is_refused(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    node = make_node("Twice Hospital")
    secure_link.register(node.dir, "twice-hospital")
    env = serve_env(node.dir, secure_link, short_dir)
    first = start_serve(env)
    first.wait_health(200)
    second = start_serve({**env, "METAI_NODE_HEALTH_PORT": str(free_port())})
    assert second.wait_exit() == 1
    assert second.stderr() == (f"error: another `metai-node serve` (pid {first.proc.pid}) runs for this node (it "
                               f"holds {short_dir}/serve.lock); stop it first, or give this one another "
                               "METAI_NODE_DIR\n")
    assert first.wait_health(200)["status"] == "ok"
