"""`metai-node serve` killed outright (SIGKILL): its children do not outlive it, and a new serve starts at once
on the same node (stale lock, state, socket and SuperNode activation handled)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from node.procs import start_time
from tests.node.serve_fixture import SecureLink, serve_env


def _wait_gone(processes: dict[int, int], timeout: float = 60.0) -> list[int]:
    """The PIDs of ``processes`` still running after ``timeout`` seconds (or as soon as none is)."""
    deadline = time.monotonic() + timeout
    alive = list(processes)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if start_time(pid) == processes[pid]]
        time.sleep(0.2)
    return alive


def test_a_killed_serve_leaves_nothing_running_and_the_next_one_starts(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    node = make_node("Crash Hospital")
    secure_link.register(node.dir, "crash-hospital")
    env = serve_env(node.dir, secure_link, short_dir)
    first = start_serve(env)
    children = first.wait_health(200)["children"]
    state = json.loads((short_dir / "serve.json").read_text())
    recorded = {pid: started for pid, started in state["children"].values()}
    assert set(recorded) == {children["signer"]["pid"], children["supernode"]["pid"]}
    os.kill(first.proc.pid, signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL
    # The kernel tells each child its parent died (PR_SET_PDEATHSIG): none keeps running on its own.
    assert _wait_gone(recorded) == []

    second = start_serve(env)
    body = second.wait_health(200)
    assert body["children"]["supernode"]["node_id"] == children["supernode"]["node_id"]
    assert body["children"]["supernode"]["restarts"] == 0  # admitted on its first try
    assert body["children"]["signer"]["answering"] is True
    serve_log = (second.log_dir / "serve.log").read_text()
    assert f"the previous serve (pid {first.proc.pid}) did not stop cleanly" in serve_log


def test_after_everything_was_killed_at_once_the_next_serve_cleans_up_and_starts(  # type: ignore[no-untyped-def]
        make_node, secure_link: SecureLink, short_dir: Path, start_serve) -> None:
    """What ``systemctl kill -s KILL`` does to the unit: serve and every child die at the same instant. The signing
    agent leaves its socket, and the SuperLink still counts the SuperNode online (it forgets after 60 s)."""
    node = make_node("Blackout Hospital")
    secure_link.register(node.dir, "blackout-hospital")
    env = serve_env(node.dir, secure_link, short_dir)
    first = start_serve(env)
    children = first.wait_health(200)["children"]
    everything = {**_descendants(first.proc.pid), first.proc.pid: start_time(first.proc.pid)}
    for pid in everything:  # the children first: serve's death would send them SIGTERM, too gentle here
        os.kill(pid, signal.SIGKILL)
    assert _wait_gone(everything) == []  # type: ignore[arg-type]
    socket_path = short_dir / "signer" / "agent.sock"
    assert socket_path.exists()  # stale

    second = start_serve(env)
    body = second.wait_health(200)
    node_id = children["supernode"]["node_id"]
    assert body["children"]["supernode"]["node_id"] == node_id
    assert body["children"]["supernode"]["restarts"] == 0  # the SuperLink was told first, so it admitted it at once
    assert body["children"]["signer"]["answering"] is True  # on a fresh socket at the same path
    serve_log = (second.log_dir / "serve.log").read_text()
    assert f"told the SuperLink that node {node_id} of the previous SuperNode process is offline" in serve_log


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
