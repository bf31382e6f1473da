"""A SuperNode's resident ClientApp worker (node/federated/), on a real SuperLink and two SuperNodes on loopback.

The probe app reports, for every message, the PID that handled it, how many messages that
process had handled since it imported the app, and how many this run had (a counter it keeps in
``context.state``, which Flower keeps per run).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.flower import (
    FlowerRunError,
    RunResult,
    SuperLinkProcess,
    SuperNodeProcess,
    run_app,
    start_superlink,
    start_supernode,
    stop,
    write_federation_config,
)
from deploy.process import descendants, read_log

PROBE = Path(__file__).resolve().parent / "flower_probe"
NAMES = ("north", "south")


@dataclass(frozen=True)
class Lab:
    superlink: SuperLinkProcess
    nodes: dict[str, SuperNodeProcess]
    reports: Path

    def run(self, rounds: int, app: Path = PROBE, **config: Any) -> RunResult:
        return run_app(app, flwr_home=self.superlink.flwr_home, federation="lab", timeout=240,
                       run_config={"num-rounds": rounds, **config})

    def seen(self, name: str, round_: int) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.reports / f"{name}-round{round_}.json").read_text())
        return report


def worker_pid(node: SuperNodeProcess, not_pid: int | None = None, timeout: float = 30.0) -> int:
    """The PID of the SuperNode's one worker (other than ``not_pid``), waiting for it to be there."""
    deadline = time.monotonic() + timeout
    while True:
        workers = [pid for pid, _ in descendants(node.pid)
                   if "worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
        if len(workers) == 1 and workers[0] != not_pid:
            return workers[0]
        assert time.monotonic() < deadline, f"SuperNode {node.pid} has workers {workers} (not {not_pid})"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A SuperLink and two SuperNodes in their default isolation (a resident worker each)."""
    run_dir = tmp_path_factory.mktemp("flower-worker")
    started: list[SuperLinkProcess | SuperNodeProcess] = []
    try:
        superlink = start_superlink(run_dir)
        started.append(superlink)
        nodes = {}
        for value, name in enumerate(NAMES, start=1):
            nodes[name] = start_supernode(run_dir, superlink, name, node_config={
                "node-name": name, "node-value": float(value), "report-dir": str(run_dir / "reports")})
            started.append(nodes[name])
        write_federation_config(superlink.flwr_home, "lab", superlink, None)
        yield Lab(superlink, nodes, run_dir / "reports")
    finally:
        for process in reversed(started):
            stop(process)


@pytest.mark.slow
def test_one_worker_process_handles_every_round(lab: Lab) -> None:
    pids = {name: worker_pid(node) for name, node in lab.nodes.items()}
    result = lab.run(3)
    assert result.status == "finished:completed"
    for name, node in lab.nodes.items():
        seen = [lab.seen(name, round_) for round_ in (1, 2, 3)]
        assert {s["pid"] for s in seen} == {pids[name]}
        assert pids[name] in {pid for pid, _ in node.children}  # the SuperNode's own child
        first = seen[0]["messages_in_process"]
        assert [s["messages_in_process"] for s in seen] == [first, first + 1, first + 2]  # the app was imported once
        assert [s["messages_in_run"] for s in seen] == [1, 2, 3]


@pytest.mark.slow
def test_two_runs_share_the_worker_but_not_their_run_state(lab: Lab) -> None:
    first = lab.run(2)
    before = {name: lab.seen(name, 2) for name in NAMES}
    second = lab.run(2)
    assert (first.status, second.status) == ("finished:completed", "finished:completed")
    for name in NAMES:
        after = [lab.seen(name, round_) for round_ in (1, 2)]
        assert {s["run_id"] for s in after} == {second.run_id} != {first.run_id}
        assert {s["pid"] for s in after} == {before[name]["pid"]}
        assert [s["messages_in_process"] for s in after] == [before[name]["messages_in_process"] + i for i in (1, 2)]
        assert [s["messages_in_run"] for s in after] == [1, 2]  # nothing of the first run's context.state


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_the_next_run_uses_the_new_one(lab: Lab) -> None:
    node = lab.nodes["north"]
    old = worker_pid(node)
    os.kill(old, signal.SIGKILL)
    new = worker_pid(node, not_pid=old)
    result = lab.run(2)
    assert result.status == "finished:completed"
    assert [lab.seen("north", round_)["pid"] for round_ in (1, 2)] == [new, new]
    assert [lab.seen("north", round_)["messages_in_process"] for round_ in (1, 2)] == [1, 2]
    assert f"ClientApp worker {old} was killed by signal 9" in read_log(node.log_file)


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_of_a_message_fails_that_round_with_flowers_error(lab: Lab) -> None:
    node = lab.nodes["south"]
    old = worker_pid(node)
    log_start = node.log_file.stat().st_size

    def kill_while_handling() -> None:
        deadline = time.monotonic() + 60
        while "Received successfully" not in read_log(node.log_file, log_start) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # the handler sleeps 20 s: the worker is in the middle of the message
        os.kill(old, signal.SIGKILL)

    killer = threading.Thread(target=kill_while_handling)
    killer.start()
    try:
        with pytest.raises(FlowerRunError, match=r"round 1: 2/2 replies, errors \[.*ClientApp stopped responding"):
            lab.run(1, **{"handler-seconds": 20.0, "round-timeout": 150.0})
    finally:
        killer.join()
    new = worker_pid(node, not_pid=old)
    result = lab.run(1)
    assert result.status == "finished:completed"
    assert lab.seen("south", 1)["pid"] == new


@pytest.mark.slow
def test_a_run_of_other_code_gets_a_fresh_worker(lab: Lab, tmp_path: Path) -> None:
    changed = tmp_path / "flower_probe"
    shutil.copytree(PROBE, changed)
    task = changed / "flower_probe" / "task.py"
    task.write_text(task.read_text() + "\n# another version of the app: another FAB hash\n")
    assert lab.run(1).status == "finished:completed"
    before = lab.seen("north", 1)
    result = lab.run(1, app=changed)
    assert result.status == "finished:completed"
    after = lab.seen("north", 1)
    assert after["pid"] == before["pid"]  # replaced in place (exec): the same process, a fresh interpreter
    assert after["messages_in_process"] == 1
    assert Path(after["app_file"]).parent.parent != Path(before["app_file"]).parent.parent  # the other FAB's copy
    assert "brings other code" in read_log(lab.nodes["north"].log_file)


@pytest.mark.slow
def test_a_worker_whose_installed_app_files_changed_is_replaced_before_the_next_message(lab: Lab) -> None:
    assert lab.run(1).status == "finished:completed"
    before = lab.seen("north", 1)
    app_file = Path(before["app_file"])  # the installed FAB's copy, which the worker runs
    app_file.write_text(app_file.read_text() + "\n# edited on disk while the worker runs\n")
    result = lab.run(1)
    assert result.status == "finished:completed"
    after = lab.seen("north", 1)
    assert (after["pid"], after["messages_in_process"]) == (before["pid"], 1)  # a fresh interpreter, same process
    assert "files of the installed app" in read_log(lab.nodes["north"].log_file)
    assert lab.seen("south", 1)["messages_in_process"] > 1  # the other node's copy did not change
