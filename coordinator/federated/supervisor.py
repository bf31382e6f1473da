"""One child process kept running by the service: started, watched, started again when it dies, stopped.

The coordinator service supervises its managed SuperLink and its Fleet gateway this way
(:mod:`coordinator.federated.managed`). A child that exits while the service runs (a crash,
SIGKILL) is logged with its exit status and started again after a pause: 1 s, doubling while it
keeps dying within a minute of its start, 30 s at most. The children it had spawned (the
SuperLink's SuperExec and ServerApps) are stopped first, so a restarted SuperLink never shares
its state with the previous one's leftovers.

The child and its children are recorded as (PID, start time) in a JSON file. A service killed
with SIGKILL cannot stop them; the next start of the service reads the record and stops whatever
of it still runs (nothing is signalled unless PID and start time both match), so the new child
finds its port free.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from coordinator.errors import CoordinatorError
from coordinator.federated.processes import descendants, read_log, spawn, start_time, stop_tree, tail_text

__all__ = ["ChildStartError", "Supervised"]

_log = logging.getLogger("metai.coordinator.supervisor")
_POLL = 0.5
_FIRST_PAUSE, _MAX_PAUSE, _STABLE = 1.0, 30.0, 60.0


class ChildStartError(CoordinatorError, RuntimeError):
    """A supervised child exited before it was ready, or was not ready in time (its log is quoted)."""


class Supervised:
    """A child process the service keeps running.

    Parameters:
        name: what logs and errors call it (``SuperLink``, ``Fleet gateway``).
        command: its command line.
        log_file: its standard output and error are appended here.
        env: its whole environment.
        ready: returns True once the child serves (called every 0.1 s while it starts).
        record: the JSON file where its PID, start time and children are kept.
        start_timeout: seconds a start may take until ``ready``.
    """

    def __init__(self, name: str, command: Sequence[str], *, log_file: Path, env: Mapping[str, str],
                 ready: Callable[[], bool], record: Path, start_timeout: float = 60.0) -> None:
        self.name = name
        self.command = list(command)
        self.log_file = log_file
        self.env = dict(env)
        self.ready = ready
        self.record = record
        self.start_timeout = start_timeout
        #: How many times the child was started again after it died.
        self.restarts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._started: int | None = None
        self._children: dict[int, int] = {}
        self._spawned_at = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The running child's PID (None when none runs)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def running(self) -> bool:
        """Whether the child runs now and answered ``ready`` since it was (last) started."""
        return self._ready.is_set() and self.pid is not None

    def start(self) -> None:
        """Stop what a killed service left of an earlier child, start the child, wait until it is ready, watch it.

        Raises:
            ChildStartError: it exited or was not ready within ``start_timeout`` (nothing is left running).
        """
        self._stop_recorded()
        self._stopping.clear()
        self._spawn_ready()
        self._watcher = threading.Thread(target=self._watch, name=f"watch-{self.name}", daemon=True)
        self._watcher.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the child (SIGTERM, SIGKILL after ``timeout``) and its children; it is not started again."""
        self._stopping.set()
        with self._lock:
            self._stop_current(timeout)
        if self._watcher is not None:
            self._watcher.join(timeout)
            self._watcher = None
        self.record.unlink(missing_ok=True)

    # ------------------------------------------------------------------ internals

    def _spawn_ready(self) -> None:
        with self._lock:
            if self._stopping.is_set():
                return
            log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
            self._ready.clear()
            proc = spawn(self.command, self.log_file, env=self.env)
            self._proc, self._started, self._children = proc, start_time(proc.pid), {}
            self._save()
        deadline = time.monotonic() + self.start_timeout
        while not self._stopping.is_set():
            if self.ready():
                self._ready.set()
                self._spawned_at = time.monotonic()
                self._note_children()
                _log.info("%s started (pid %d)", self.name, proc.pid)
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                why = f"exited with {proc.returncode}" if proc.poll() is not None else \
                    f"was not ready within {self.start_timeout:g} s"
                with self._lock:
                    self._stop_current(5.0)
                ending = tail_text(read_log(self.log_file, log_start)) or "(no log)"
                raise ChildStartError(f"{self.name} {why}; its log ({self.log_file}) ends:\n{ending}")
            time.sleep(0.1)

    def _watch(self) -> None:
        pause, beat = _FIRST_PAUSE, 0
        while not self._stopping.wait(_POLL):
            proc = self._proc
            if proc is None:
                return
            if proc.poll() is None:
                beat += 1
                if beat % 8 == 0:  # every 4 s: the SuperLink spawns ServerApps while it runs
                    self._note_children()
                continue
            lived = time.monotonic() - self._spawned_at
            _log.error("%s (pid %d) ended unexpectedly with exit status %s; starting it again in %.0f s",
                       self.name, proc.pid, proc.returncode, pause)
            with self._lock:
                self._stop_current(5.0)  # what it had spawned
            if self._stopping.wait(pause):
                return
            pause = _FIRST_PAUSE if lived > _STABLE else min(pause * 2, _MAX_PAUSE)
            try:
                self._spawn_ready()
            except (ChildStartError, OSError) as exc:
                _log.error("starting %s again failed: %s", self.name, exc)
                continue
            self.restarts += 1

    def _note_children(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        found = dict(descendants(proc.pid))
        with self._lock:
            if found.keys() - self._children.keys():
                self._children.update(found)
                self._save()

    def _stop_current(self, timeout: float) -> None:
        """Stop the child and the children it had (caller holds the lock)."""
        proc = self._proc
        if proc is None:
            return
        stop_tree(proc.pid, tuple(self._children.items()), timeout, self._started)
        proc.poll()

    def _save(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self.record.parent.mkdir(parents=True, exist_ok=True)
        data = {"name": self.name, "pid": proc.pid, "start_time": self._started,
                "children": sorted(self._children.items())}
        self.record.write_text(json.dumps(data) + "\n", encoding="utf-8")

    def _stop_recorded(self) -> None:
        try:
            data = json.loads(self.record.read_text(encoding="utf-8"))
            pid, started = int(data["pid"]), data["start_time"]
            children = tuple((int(child), int(at)) for child, at in data.get("children", []))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _log.warning("cannot read %s (%s); an earlier %s is not looked for", self.record, exc, self.name)
            return
        if started is not None and start_time(pid) == started:
            _log.warning("%s (pid %d) of an earlier run of the service still runs; stopping it", self.name, pid)
        stop_tree(pid, children, 10.0, started if started is not None else -1)
