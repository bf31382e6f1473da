"""Child processes: spawn with a log file, find their children, stop them by PID and start time.

A PID alone does not name a process for long: once a process has exited and been reaped the
kernel may hand its number to another one. So every process we may stop later is recorded as
(PID, start time) -- the start time being field 22 of ``/proc/<pid>/stat``, in clock ticks since
boot -- and nothing is signalled unless both still match. Linux only (``/proc``).

The coordinator service supervises its SuperLink and Fleet gateway with these
(:mod:`coordinator.federated.supervisor`); ``deploy`` starts and stops its local processes with
them (:mod:`deploy.process` re-exports them).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from coordinator.federated.superlink import clean, tail_text

__all__ = [
    "as_user",
    "clean",
    "descendants",
    "die_with_parent",
    "is_gone",
    "read_log",
    "spawn",
    "start_time",
    "stop_tree",
    "tail",
    "tail_text",
    "terminate",
]

# Children started by spawn(), until is_gone() sees them exit: holding the Popen keeps Python
# from warning that a still-running child was dropped, and poll() reaps it.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_PR_SET_PDEATHSIG = 1


def as_user(name: str) -> dict[str, Any]:
    """Return the ``subprocess.Popen`` arguments that run a child as the system user ``name``.

    The child gets that user's UID, primary group and supplementary groups and none of the caller's
    (``user=`` alone would leave it root's groups). No wrapper process: the child's PID is the
    program's. Only root may switch users.

    Raises:
        KeyError: there is no user ``name``.
    """
    account = pwd.getpwnam(name)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": os.getgrouplist(name, account.pw_gid)}


def spawn(
    cmd: list[str],
    log_file: Path,
    *,
    env: Mapping[str, str] | None = None,
    own_session: bool = True,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in the background with stdout and stderr appended to ``log_file``.

    A line with the time and the command line is written to the log first, so a log that holds
    several starts shows where each begins.

    Parameters:
        cmd: the program and its arguments.
        log_file: appended to; its directory is created if needed.
        env: the whole environment of the process; None: this process's.
        own_session: start it in a session of its own, so a terminal's Ctrl-C reaches only the
            caller, who stops it by PID (False: it shares the caller's session and signals).
        user: run it as this system user (see :func:`as_user`); None: as the caller. The log
            file is opened by the caller, so that user need not be able to reach it.
        cwd: the working directory of the process; None: the caller's.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            start_new_session=own_session,
            cwd=cwd,
            **(as_user(user) if user is not None else {}),
        )
    _CHILDREN[proc.pid] = proc
    return proc


def start_time(pid: int) -> int | None:
    """Return when ``pid`` started (clock ticks since boot), or None if it is gone or a zombie."""
    stat = _stat(pid)
    return int(stat[19]) if stat and stat[0] != "Z" else None  # field 22 of proc(5)


def descendants(pid: int) -> tuple[tuple[int, int], ...]:
    """Return (pid, start time) of every live descendant of ``pid``, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            parents.setdefault(int(stat[1]), []).append(int(entry.name))
    found: list[tuple[int, int]] = []
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        if (started := start_time(child)) is not None:
            found.append((child, started))
        todo += parents.get(child, [])
    return tuple(found)


def is_gone(pid: int) -> bool:
    """Return True once ``pid`` has exited; our own child is also reaped, so its PID is free afterwards."""
    if (proc := _CHILDREN.get(pid)) is not None:
        if proc.poll() is None:
            return False
        del _CHILDREN[pid]
        return True
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not our child: a zombie awaits its own parent (or init) and counts as gone
        return start_time(pid) is None


def terminate(pid: int, timeout: float) -> None:
    """Send SIGTERM to ``pid``, SIGKILL after ``timeout`` seconds, and wait (5 s more at most) until it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        is_gone(pid)  # reap it if it was our child
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_gone(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0  # SIGKILL cannot be refused, only delayed (uninterruptible I/O)
    while not is_gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def stop_tree(
    pid: int, children: tuple[tuple[int, int], ...] = (), timeout: float = 10.0, started: int | None = None
) -> None:
    """Stop ``pid`` (see :func:`terminate`), then whatever of its process tree is still running.

    Parameters:
        pid: the process.
        children: (pid, start time) of children recorded earlier; they are stopped too, even
            if they were re-parented since (a parent that exits leaves its children to init).
        timeout: seconds before SIGKILL, for ``pid`` and then again for the children.
        started: ``pid``'s start time when it was recorded; if ``pid`` now belongs to a process
            that started at another time, nothing is signalled. None: not checked.

    Stopping twice is harmless: a child is signalled only while its PID and start time match.
    """
    if started is not None and start_time(pid) not in (started, None):
        return  # it ended long ago and its PID now belongs to someone else
    family = dict.fromkeys((*children, *descendants(pid)))
    terminate(pid, timeout)
    alive = [child for child, child_started in family if start_time(child) == child_started]
    for child in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = [child for child in alive if not is_gone(child)]
        time.sleep(0.05)
    for child in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


def read_log(path: Path, start: int = 0) -> str:
    """Return the text of ``path`` from byte ``start`` on, ANSI colours stripped ("" if unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            return clean(f.read())
    except OSError:
        return ""


def tail(path: Path, lines: int = 30) -> str:
    """Return the last ``lines`` lines of the log ``path``, or ``(no log)``."""
    return tail_text(read_log(path), lines) or "(no log)"


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "pid (comm) "; [0] is state, [1] the parent


def die_with_parent(parent: int) -> bool:
    """Ask Linux to send this process SIGTERM when its parent dies; False if ``parent`` is gone already.

    A child of the service that is our own Python code calls it first thing, so a service killed
    with SIGKILL does not leave it running (a program we do not write, such as the SuperLink, is
    found through its recorded PID instead: :class:`coordinator.federated.supervisor.Supervised`).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux
        pass
    return os.getppid() == parent  # asked after prctl: a parent that died before it is seen here
