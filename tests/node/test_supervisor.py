"""The supervisor of `metai-node serve`, with real child processes: whole lines in rotated logs, restarts with
doubling pauses, a child that cannot start named in one line, and nothing left after a stop."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.logfiles import LogFile
from node.procs import start_time
from node.supervisor import ChildSpec, StartFailed, Supervisor

LINES = 400
# Prints "ready", then LINES numbered lines of varying length, each written in two pieces with a flush between
# (a reader that split at the flush would cut lines in two), then waits to be stopped.
CHATTY = f"""
import sys, time
print("ready", flush=True)
for i in range({LINES}):
    text = f"line {{i:04d}} " + "x" * (i * 7 % 150)
    sys.stdout.write(text[:9]); sys.stdout.flush()
    sys.stdout.write(text[9:] + "\\n"); sys.stdout.flush()
print("done", flush=True)
time.sleep(600)
"""


def _spec(name: str, code: str, ready: str = "ready") -> ChildSpec:
    return ChildSpec(name=name, command=[sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin"},
                     ready=lambda line: {} if line == ready else None)


@pytest.fixture
def serve_log() -> Iterator[tuple[logging.Logger, list[str]]]:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    log = logging.getLogger("test.supervisor")
    log.propagate = False
    handler = Keep()
    log.addHandler(handler)
    yield log, records
    log.removeHandler(handler)


def _stamped(path: Path) -> list[str]:
    """The lines of a log file without the time serve put before each."""
    return [re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", "", line) for line in path.read_text().splitlines()]


def test_a_childs_output_is_rotated_by_size_in_whole_lines_and_nothing_is_lost(  # type: ignore[no-untyped-def]
        tmp_path: Path, serve_log) -> None:
    log, _ = serve_log
    log_file = LogFile(tmp_path / "chatty.log", max_bytes=1024, backups=200)
    supervisor = Supervisor([_spec("chatty", CHATTY)], {"chatty": log_file}, log, threading.Event())
    assert supervisor.start(timeout=60)
    (pid, _), = supervisor.processes().values()
    try:
        for _ in range(600):
            if (tmp_path / "chatty.log").exists() and "done" in _stamped(tmp_path / "chatty.log"):
                break
            threading.Event().wait(0.1)
    finally:
        supervisor.stop(timeout=10)
    log_file.close()
    rotated = sorted(tmp_path.glob("chatty.log.*"), key=lambda p: int(p.suffix[1:]), reverse=True)
    assert len(rotated) > 20  # it did rotate, many times
    files = [*rotated, tmp_path / "chatty.log"]
    assert all(path.stat().st_size <= 1024 for path in files)
    lines = [line for path in files for line in _stamped(path)]
    expected = [f"line {i:04d} " + "x" * (i * 7 % 150) for i in range(LINES)]
    assert lines[0].startswith("--- starting ")
    assert lines[1] == "ready"
    assert lines[-1] == "done"
    assert lines[2:-1] == expected  # every line, whole, once, in order, across the files
    assert start_time(pid) is None


def test_rotation_keeps_only_the_backups_asked_for(tmp_path: Path) -> None:
    log_file = LogFile(tmp_path / "x.log", max_bytes=1024, backups=3)
    for i in range(200):
        log_file.write(f"entry {i:03d} " + "y" * 40)
    log_file.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.1", "x.log.2", "x.log.3"]
    newest = _stamped(tmp_path / "x.log")
    assert newest[-1] == "entry 199 " + "y" * 40


def test_a_child_that_keeps_dying_is_restarted_after_doubling_pauses(  # type: ignore[no-untyped-def]
        tmp_path: Path, serve_log) -> None:
    log, records = serve_log
    # Ready at once, then dies after a moment while serve runs: restarted after 1, 2, 4 s.
    spec = _spec("flaky", "import time; print('ready', flush=True); time.sleep(0.3); print('error: boom'); "
                          "raise SystemExit(3)")
    stopping = threading.Event()
    supervisor = Supervisor([spec], {"flaky": LogFile(tmp_path / "flaky.log", 1 << 20, 2)}, log, stopping)
    assert supervisor.start(timeout=60)
    watcher = threading.Thread(target=lambda: _stop_after_restarts(supervisor, stopping, 3))
    watcher.start()
    supervisor.run()
    watcher.join()
    supervisor.stop(timeout=10)
    pauses = [float(m.group(1)) for r in records if (m := re.search(r"exited after .*restarting in ([\d.]+) s", r))]
    assert pauses[:3] == [1.0, 2.0, 4.0]
    exits = [r for r in records if "flaky (pid" in r and "exited after" in r]
    assert all("exit code 3: error: boom" in r for r in exits)
    state = supervisor.snapshot()["flaky"]
    assert state["restarts"] >= 3
    assert state["last_exit"]["code"] == 3


def _stop_after_restarts(supervisor: Supervisor, stopping: threading.Event, restarts: int) -> None:
    for _ in range(600):
        if supervisor.snapshot()["flaky"]["restarts"] >= restarts:
            break
        threading.Event().wait(0.1)
    stopping.set()


def test_a_child_that_exits_while_starting_stops_the_start_with_its_error_line(  # type: ignore[no-untyped-def]
        tmp_path: Path, serve_log) -> None:
    log, _ = serve_log
    spec = _spec("broken", "import sys; print('loading'); print('error: the key is damaged; make a new one', "
                           "file=sys.stderr); raise SystemExit(1)")
    supervisor = Supervisor([spec], {"broken": LogFile(tmp_path / "broken.log", 1 << 20, 2)}, log, threading.Event())
    with pytest.raises(StartFailed, match=r"^the key is damaged; make a new one$"):
        supervisor.start(timeout=60)
    supervisor.stop(timeout=10)


def test_a_child_never_ready_stops_the_start_naming_its_last_line(  # type: ignore[no-untyped-def]
        tmp_path: Path, serve_log) -> None:
    log, _ = serve_log
    spec = _spec("silent", "import time; print('waiting for something', flush=True); time.sleep(600)")
    supervisor = Supervisor([spec], {"silent": LogFile(tmp_path / "silent.log", 1 << 20, 2)}, log, threading.Event())
    with pytest.raises(StartFailed, match=r"silent was not ready within 2 s \(last line: waiting for something\)"):
        supervisor.start(timeout=2)
    (pid, _), = supervisor.processes().values()
    supervisor.stop(timeout=10)
    assert start_time(pid) is None
