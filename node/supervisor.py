"""Supervised children of ``metai-node serve``: start in order, restart with backoff, log, stop by PID.

The children are data (:class:`ChildSpec`): a name, a command, an environment, and what their
output means (ready, cannot start, will start if tried again). :class:`Supervisor` runs them:

- **start**: each child in turn, waiting until it says it is ready, all within one deadline.
  A child that exits first stops the start: serve cannot start, and says why in one line
  (the child's last ``error:`` line, or a better reason from :attr:`ChildSpec.start_failed`),
  unless that hook finds the failure passes, when it is started again after a pause.
- **run**: a child that exits is started again after a pause that doubles from 1 s to 60 s
  while it keeps dying within a minute of its start; each exit and restart is logged.
- **stop**: SIGTERM to each child's process group (last started first), SIGKILL after a timeout.

Every child runs in a session (and process group) of its own, so a terminal's Ctrl-C reaches
serve alone, which stops them in order; the kernel sends it SIGTERM if serve dies
(``PR_SET_PDEATHSIG``, :func:`node.procs.die_with_parent`), so a killed serve leaves no child
running. What a child prints (stdout and stderr, one stream) goes line by line to its log file
(:class:`node.logfiles.LogFile`). Children are spawned from the thread that built the
supervisor only (serve's main thread): the kernel ties the death signal to that thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.errors import NodeError
from node.logfiles import LogFile, clean_line
from node.procs import die_with_parent, signal_name, start_time

__all__ = ["BACKOFF_MAX", "BACKOFF_START", "STABLE_AFTER", "ChildSpec", "StartFailed", "Supervisor"]

#: Seconds before the first restart of a child, doubled for each quick death in a row, at most BACKOFF_MAX.
BACKOFF_START = 1.0
BACKOFF_MAX = 60.0
#: A child that ran this many seconds before it died is restarted after BACKOFF_START again.
STABLE_AFTER = 60.0
_RECENT = 200  # lines of a child's output kept to explain its exit


class StartFailed(NodeError, RuntimeError):
    """A child of serve exited or was not ready in time while serve started; the message says why."""


@dataclass(frozen=True)
class ChildSpec:
    """One supervised child.

    Parameters:
        name: names it in logs, health and its log file (``<name>.log``).
        command, env: what to run and its whole environment.
        ready: given each line it prints, returns facts to show in health (``{}`` if none)
            once a line says it is ready, else None.
        start_failed: asked when a start ended before the child was ready, with its output and the
            default reason: None to start it again after a pause (something that passes), or
            the reason serve cannot start. Without it every such end stops serve.
        before_start: called before a child that exited while serve ran is started again, with
            what it printed last.
        preflight: asked once before its first start: None, or why serve cannot start (e.g.
            the SuperLink cannot be reached).
        check: asked by the health check while the child is ready: facts to show, and None if
            all is well or the problem.
    """

    name: str
    command: Sequence[str]
    env: Mapping[str, str]
    ready: Callable[[str], dict[str, Any] | None]
    start_failed: Callable[[Sequence[str], str], str | None] | None = None
    before_start: Callable[[Sequence[str]], None] | None = None
    preflight: Callable[[], str | None] | None = None
    check: Callable[[], tuple[dict[str, Any], str | None]] | None = None


@dataclass
class _Run:
    """One process of a child, from its start to its exit."""

    proc: subprocess.Popen[bytes]
    started: float  # time.monotonic()
    started_at: str  # ISO time
    start_ticks: int | None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=_RECENT))
    facts: dict[str, Any] | None = None  # set once ready
    announced: bool = False  # on_change was called for its readiness
    pump: threading.Thread | None = None


@dataclass
class _Child:
    spec: ChildSpec
    log_file: LogFile
    run: _Run | None = None
    restarts: int = 0
    quick_deaths: int = 0
    due: float | None = None  # time.monotonic() of the next start, while it waits for one
    last_exit: dict[str, Any] | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # the last ready facts, kept across restarts


class Supervisor:
    """Starts, watches, restarts and stops ``specs`` (see the module docstring).

    Parameters:
        specs: the children, in start order.
        log_files: the log file of each child, by name.
        log: serve's own logger.
        stopping: set (by a signal handler) to make :meth:`start` and :meth:`run` return.
        on_change: called (from the main thread) after a child starts, becomes ready or exits, e.g. to
            record PIDs and what the children said.
    """

    def __init__(self, specs: Sequence[ChildSpec], log_files: Mapping[str, LogFile], log: logging.Logger,
                 stopping: threading.Event, on_change: Callable[[], None] = lambda: None) -> None:
        self._children = [_Child(spec, log_files[spec.name]) for spec in specs]
        self._log = log
        self._stopping = stopping
        self._on_change = on_change
        self._lock = threading.Lock()
        self._thread = threading.current_thread()

    # ------------------------------------------------------------------ start, run, stop

    def start(self, timeout: float) -> bool:
        """Start every child in order, each ready before the next; False if stopped meanwhile.

        Raises:
            StartFailed: a child exited for good, or was not ready within ``timeout`` seconds overall.
        """
        deadline = time.monotonic() + timeout
        for child in self._children:
            delay = BACKOFF_START
            if child.spec.preflight is not None and (problem := child.spec.preflight()) is not None:
                raise StartFailed(problem)
            self._spawn(child)
            while True:
                if self._stopping.wait(0.05):
                    return False
                run = child.run
                assert run is not None
                if run.facts is not None:
                    self._announce(run)
                    break
                if (code := self._reap(run)) is not None:
                    if run.pump is not None:
                        run.pump.join(timeout=5)
                    reason = self._exit_reason(child, code)
                    default = self._start_failure(child, code)
                    hook = child.spec.start_failed
                    if (fatal := default if hook is None else hook(list(run.lines), default)) is not None:
                        raise StartFailed(fatal)
                    if time.monotonic() + delay > deadline:
                        raise StartFailed(f"{child.spec.name} did not start within {timeout:g} s: {reason}")
                    self._log.warning("%s could not start yet (%s); trying again in %g s", child.spec.name, reason,
                                      delay)
                    if self._stopping.wait(delay):
                        return False
                    delay = min(delay * 2, BACKOFF_MAX)
                    child.restarts += 1
                    self._spawn(child)
                elif time.monotonic() > deadline:
                    last = run.lines[-1] if run.lines else "it printed nothing"
                    raise StartFailed(f"{child.spec.name} was not ready within {timeout:g} s (last line: {last}); "
                                      f"its log: {child.log_file.path}")
        return True

    def run(self) -> None:
        """Watch the children until ``stopping`` is set: restart each that exits, after its backoff."""
        while not self._stopping.wait(0.2):
            for child in self._children:
                run = child.run
                if run is not None and run.facts is not None:
                    self._announce(run)
                if child.due is None and run is not None and (code := self._reap(run)) is not None:
                    self._exited(child, run, code)
                if child.due is not None and time.monotonic() >= child.due and not self._stopping.is_set():
                    child.due = None
                    if child.run is not None:
                        self._before(child, child.run)
                    child.restarts += 1
                    self._spawn(child)

    def stop(self, timeout: float) -> None:
        """Stop every child, the last started first: SIGTERM to its process group, SIGKILL after ``timeout``."""
        for child in reversed(self._children):
            run = child.run
            if run is None:
                continue
            pid = run.proc.pid
            if run.proc.returncode is None:  # not reaped: the PID (and group id) is still this child's
                _signal_group(pid, signal.SIGTERM)
                if not _exited(run.proc, timeout):
                    self._log.warning("%s (pid %d) did not stop within %g s of SIGTERM; killing it",
                                      child.spec.name, pid, timeout)
                    _signal_group(pid, signal.SIGKILL)
                    _exited(run.proc, 5.0)
                _signal_group(pid, signal.SIGKILL)  # whatever of its group outlived it (app processes)
            code = run.proc.wait()
            if run.pump is not None:
                run.pump.join(timeout=5)
            self._log.info("%s (pid %d) stopped (%s)", child.spec.name, pid, signal_name(code))
            with self._lock:
                child.run = None
        self._on_change()

    # ------------------------------------------------------------------ what health reports

    def processes(self) -> dict[str, tuple[int, int | None]]:
        """(PID, start time) of each child that has a process now, by name."""
        with self._lock:
            return {c.spec.name: (c.run.proc.pid, c.run.start_ticks) for c in self._children if c.run is not None}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Each child's state: running, pid, restarts, since, ready, its facts, the last exit."""
        out = {}
        with self._lock:
            for child in self._children:
                run = child.run
                # returncode, not poll(): only the supervisor's thread reaps (a PID it signals stays its child's)
                running = run is not None and run.proc.returncode is None and child.due is None
                out[child.spec.name] = {
                    "running": running,
                    "pid": run.proc.pid if run is not None and running else None,
                    "restarts": child.restarts,
                    "since": run.started_at if run is not None and running else None,
                    "ready": running and run is not None and run.facts is not None,
                    **child.facts,
                    "last_exit": child.last_exit,
                }
        return out

    def check(self, name: str) -> Callable[[], tuple[dict[str, Any], str | None]] | None:
        """The health probe of child ``name``, if it has one."""
        return next((c.spec.check for c in self._children if c.spec.name == name), None)

    # ------------------------------------------------------------------ inside

    def _spawn(self, child: _Child) -> None:
        if threading.current_thread() is not self._thread:
            raise RuntimeError("children are spawned from the supervisor's own thread (PR_SET_PDEATHSIG)")
        child.log_file.write(f"--- starting {' '.join(child.spec.command)}")
        proc = subprocess.Popen(list(child.spec.command), env=dict(child.spec.env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=die_with_parent())
        run = _Run(proc, time.monotonic(), dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                   start_time(proc.pid))
        run.pump = threading.Thread(target=self._pump, args=(child, run), name=f"log-{child.spec.name}", daemon=True)
        with self._lock:
            child.run = run
        run.pump.start()
        again = f", restart {child.restarts}" if child.restarts else ""
        self._log.info("%s started (pid %d%s)", child.spec.name, proc.pid, again)
        self._on_change()

    def _pump(self, child: _Child, run: _Run) -> None:
        """Copy the child's output to its log file, line by line, and read what it says."""
        assert run.proc.stdout is not None
        with run.proc.stdout:
            for raw in iter(run.proc.stdout.readline, b""):
                line = clean_line(raw)
                child.log_file.write(line)
                run.lines.append(line)
                if run.facts is None and (facts := child.spec.ready(line)) is not None:
                    with self._lock:
                        run.facts = dict(facts)
                        child.facts.update(facts)
                    self._log.info("%s is ready%s", child.spec.name,
                                   "".join(f"; {k} {v}" for k, v in facts.items()))

    def _reap(self, run: _Run) -> int | None:
        """The exit code of ``run`` if it has exited, after SIGTERM to what is left of its process group; else None.

        The group is signalled before the child is reaped, while its PID cannot belong to anyone else.
        """
        if run.proc.returncode is not None:
            return run.proc.returncode
        if not _exited(run.proc, 0.0):
            return None
        _signal_group(run.proc.pid, signal.SIGTERM)  # its flower-superexec, an app process mid-task
        return run.proc.wait()

    def _announce(self, run: _Run) -> None:
        """Call on_change once for a run that became ready (its facts, e.g. a node id, are worth recording)."""
        if not run.announced:
            run.announced = True
            self._on_change()

    def _exited(self, child: _Child, run: _Run, code: int) -> None:
        if run.pump is not None:
            run.pump.join(timeout=2)
        lived = time.monotonic() - run.started
        child.quick_deaths = 0 if lived >= STABLE_AFTER else child.quick_deaths + 1
        delay = min(BACKOFF_START * 2 ** max(child.quick_deaths - 1, 0), BACKOFF_MAX)
        reason = self._exit_reason(child, code)
        with self._lock:
            child.last_exit = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "pid": run.proc.pid,
                               "code": code, "reason": reason}
            child.due = time.monotonic() + delay
        self._log.warning("%s (pid %d) exited after %.0f s: %s; restarting in %g s", child.spec.name, run.proc.pid,
                          lived, reason, delay)
        self._on_change()

    def _before(self, child: _Child, run: _Run) -> None:
        if child.spec.before_start is not None:
            child.spec.before_start(list(run.lines))

    def _exit_reason(self, child: _Child, code: int) -> str:
        if code < 0:  # killed: what it printed last says nothing about why
            return signal_name(code)
        run = child.run
        lines = list(run.lines) if run is not None else []
        said = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        return signal_name(code) + (f": {said.strip()}" if said.strip() else "")

    def _start_failure(self, child: _Child, code: int) -> str:
        run = child.run
        lines = list(run.lines) if run is not None else []
        error = next((line for line in reversed(lines) if line.startswith("error: ")), None)
        if error is not None:
            return error.removeprefix("error: ")
        return f"{child.spec.name} exited while starting ({self._exit_reason(child, code)}); its log: " \
               f"{child.log_file.path}"


def _exited(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether ``proc`` has exited (waiting up to ``timeout`` s), without reaping it (``WNOWAIT``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:  # reaped already
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
