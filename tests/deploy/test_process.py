"""Background processes: spawned with a log, found with their children, stopped only while their PID is theirs."""

from __future__ import annotations

import os
import pwd
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.process import descendants, free_port, free_ports, is_gone, spawn, start_time, stop_tree, tail

# A parent that starts a child, prints both PIDs, then sleeps; neither exits on its own.
FAMILY = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
    "print('parent', flush=True)\n"
    "time.sleep(600)\n"
)


@pytest.fixture
def family(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A running parent with one child; its PID and log. Stopped afterwards whatever the test did."""
    log = tmp_path / "family.log"
    proc = spawn([sys.executable, "-c", FAMILY], log)
    while "parent" not in log.read_text() or not descendants(proc.pid):
        assert proc.poll() is None, log.read_text()
        time.sleep(0.05)
    yield proc.pid, log
    stop_tree(proc.pid, timeout=5)


def test_spawn_appends_the_command_line_and_output_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "echo.log"
    log.parent.mkdir()
    log.write_text("earlier start\n")
    proc = spawn([sys.executable, "-c", "print('hello'); print('\\x1b[32mgreen\\x1b[0m')"], log)
    assert proc.wait(timeout=60) == 0
    text = log.read_text()
    assert text.startswith("earlier start\n\n--- ")
    assert f"{sys.executable} -c print('hello')" in text
    assert tail(log, 2) == "hello\ngreen"  # colours stripped


def test_spawn_puts_the_process_in_its_own_session_unless_asked_not_to(tmp_path: Path) -> None:
    own = spawn([sys.executable, "-c", "import os; print(os.getsid(0))"], tmp_path / "own.log")
    shared = spawn([sys.executable, "-c", "import os; print(os.getsid(0))"], tmp_path / "shared.log", own_session=False)
    assert own.wait(timeout=60) == 0
    assert shared.wait(timeout=60) == 0
    assert int(tail(tmp_path / "own.log", 1)) == own.pid
    assert int(tail(tmp_path / "shared.log", 1)) == os.getsid(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may run a program as another user")
def test_spawn_runs_the_program_itself_as_another_user_with_only_its_groups(tmp_path: Path) -> None:
    proc = spawn(["/bin/sh", "-c", "echo $$ $(id -u) $(id -G)"], tmp_path / "id.log", user="nobody")
    assert proc.wait(timeout=60) == 0
    pid, uid, *groups = (int(word) for word in tail(tmp_path / "id.log", 1).split())
    nobody = pwd.getpwnam("nobody")
    assert (pid, uid) == (proc.pid, nobody.pw_uid)  # no wrapper: the PID we hold is the program's
    assert sorted(groups) == sorted(os.getgrouplist("nobody", nobody.pw_gid))  # none of root's


def test_stop_tree_ends_the_process_and_its_children(family: tuple[int, Path]) -> None:
    pid, _ = family
    (child, child_started), = descendants(pid)
    assert start_time(child) == child_started
    stop_tree(pid, timeout=5)
    assert is_gone(pid)
    assert start_time(child) is None


def test_a_pid_that_started_at_another_time_is_left_alone(family: tuple[int, Path]) -> None:
    pid, _ = family
    started = start_time(pid)
    assert started is not None
    stop_tree(pid, timeout=5, started=started - 1)  # as if the recorded process had ended and its PID been reused
    assert start_time(pid) == started
    assert len(descendants(pid)) == 1


def test_stopping_twice_is_harmless(family: tuple[int, Path]) -> None:
    pid, _ = family
    started = start_time(pid)
    stop_tree(pid, timeout=5, started=started)
    stop_tree(pid, timeout=5, started=started)
    assert start_time(pid) is None


def test_tail_of_a_missing_log_says_so(tmp_path: Path) -> None:
    assert tail(tmp_path / "none.log") == "(no log)"


def test_free_port_is_on_loopback_and_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        assert s.getsockname() == ("127.0.0.1", port)


def test_free_ports_are_different_and_all_bindable_at_once() -> None:
    import socket

    # Drawn many times: two free_port() calls in a row have given the same port, which is why it exists.
    for _ in range(50):
        ports = free_ports(3)
        assert len(set(ports)) == 3, ports
        held = [socket.socket() for _ in ports]
        try:
            for s, port in zip(held, ports, strict=True):
                s.bind(("127.0.0.1", port))
        finally:
            for s in held:
                s.close()
