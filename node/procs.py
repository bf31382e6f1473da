"""Processes of ``metai-node serve``: tie children to their parent's life, find leftovers, stop them by PID.

A PID alone does not name a process for long (the kernel reuses numbers), so a process is
recorded with its start time (field 22 of ``/proc/<pid>/stat``, clock ticks since boot) and is
signalled only while both match. Every process serve starts, and everything those start in
turn, carries serve's instance tag in its environment (:data:`INSTANCE_VARIABLE`), which
children inherit: after a serve was killed, the next one finds whatever of it still runs by
that tag alone, however deep in the tree and whoever its parent is now. Linux only (``/proc``,
``prctl``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["INSTANCE_VARIABLE", "die_with_parent", "signal_name", "start_time", "stop_processes", "tagged"]

#: The environment variable naming the serve instance a process belongs to (not a setting).
INSTANCE_VARIABLE = "METAI_SERVE_INSTANCE"
_PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot); None if it is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) ": [0] state, [19] start time
    return None if fields[0] in ("Z", "X") else int(fields[19])


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when the process spawning it dies.

    ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends, so children must
    be spawned from a thread that lives as long as the process (serve's main thread). A
    parent that died between the fork and the ``prctl`` is caught by comparing the parent PID.
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: nothing to load in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


def tagged(instance: str) -> list[tuple[int, int]]:
    """(PID, start time) of every live process of this user whose environment names serve ``instance``."""
    marker = f"{INSTANCE_VARIABLE}={instance}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()  # readable for our own processes only
        except OSError:
            continue
        if marker in environ.split(b"\0") and (started := start_time(int(entry.name))) is not None:
            found.append((int(entry.name), started))
    return found


def stop_processes(processes: Iterable[tuple[int, int]], timeout: float,
                   gone: Callable[[int], bool] | None = None) -> list[int]:
    """Send SIGTERM to each (PID, start time) still matching, SIGKILL after ``timeout`` s; return the PIDs signalled.

    Parameters:
        processes: what to stop; a PID whose start time differs is another process now, left alone.
        timeout: seconds between SIGTERM and SIGKILL.
        gone: tells whether a PID has exited (and reaps it, for the caller's own children);
            default: its start time is gone.
    """
    gone = gone or (lambda pid: start_time(pid) is None)
    alive = [(pid, started) for pid, started in processes if start_time(pid) == started]
    for pid, _ in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    waiting = [pid for pid, _ in alive]
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if not gone(pid)]
        time.sleep(0.05)
    for pid, started in alive:
        if pid in waiting and start_time(pid) == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0  # SIGKILL cannot be refused, only delayed (uninterruptible I/O)
    while waiting and time.monotonic() < deadline:
        waiting = [pid for pid in waiting if not gone(pid)]
        time.sleep(0.05)
    return [pid for pid, _ in alive]


def signal_name(returncode: int) -> str:
    """``exit code N`` or ``killed by SIGNAME`` for a Popen return code."""
    if returncode >= 0:
        return f"exit code {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"
