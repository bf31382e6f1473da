"""Keeps a SuperNode's resident ClientApp worker (node/federated/worker.py) running, from inside the SuperNode.

The worker is the SuperNode's child, as Flower's ``flower-superexec`` is in subprocess
isolation. When it exits for any reason but this SuperNode stopping (killed, out of memory, a
Python error), the supervisor logs how and starts a new one at once; a message the dead worker
was handling gets Flower's own error reply ("ClientApp stopped responding") once its task
misses two heartbeats (60 s in Flower 1.41), so that node's round fails cleanly and the next
message goes to the new worker. A worker that keeps dying within seconds of starting is
restarted after growing pauses, and after ``max_quick_failures`` in a row the SuperNode is
stopped (SIGTERM to itself, Flower's graceful exit): a node that cannot run its ClientApp
should be seen offline, not wait for messages it cannot answer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from logging import ERROR, INFO, WARNING
from pathlib import Path

from flwr.supercore import log

__all__ = ["WORKER_FILE", "WorkerSupervisor"]

#: The worker, started as a file (see its docstring for why not as a module).
WORKER_FILE = Path(__file__).resolve().parent / "worker.py"
_QUICK = 10.0  # seconds: a worker that exits sooner failed to start


class WorkerSupervisor:
    """Starts the worker, restarts it when it exits, wakes it when a message arrives.

    Parameters:
        address: the SuperNode's Runtime API (``host:port``) the worker connects to.
        secret: the SuperNode's SuperExec auth secret (given to the worker on its stdin).
        max_quick_failures: consecutive starts that end within 10 s before the SuperNode stops.
    """

    def __init__(self, address: str, secret: bytes, *, max_quick_failures: int = 5) -> None:
        self.address = address
        self._secret = secret
        self.max_quick_failures = max_quick_failures
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._keep_running, name="clientapp-worker", daemon=True)

    def start(self) -> None:
        """Start the worker (and keep it running in a background thread)."""
        self._spawn()
        self._thread.start()

    @property
    def pid(self) -> int | None:
        """The running worker's PID, None between a worker's exit and its replacement."""
        with self._lock:
            return self._process.pid if self._process is not None and self._process.poll() is None else None

    def wake(self) -> None:
        """Tell the worker that a message is waiting (never blocks: a full pipe already says so)."""
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_write, b"\0")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the worker (SIGTERM, SIGKILL after ``timeout``) and do not restart it."""
        with self._lock:
            self._stopping.set()
            process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5.0)

    def _spawn(self) -> None:
        cmd = [sys.executable, "-P", str(WORKER_FILE), "--runtime-api-address", self.address,
               "--parent-pid", str(os.getpid()), "--wake-fd", str(self._wake_read)]
        with self._lock:
            if self._stopping.is_set():
                return
            process = subprocess.Popen(cmd, stdin=subprocess.PIPE, pass_fds=(self._wake_read,))
            self._process = process
        assert process.stdin is not None
        process.stdin.write(self._secret.hex().encode() + b"\n")  # never on the command line or in the environment
        process.stdin.close()
        log(INFO, "ClientApp worker %d started (%s)", process.pid, WORKER_FILE)

    def _keep_running(self) -> None:
        quick_failures = 0
        while True:
            with self._lock:
                process = self._process
            if process is None:  # stopped before the first start
                return
            started = time.monotonic()
            code = process.wait()
            if self._stopping.is_set():
                return
            lived = time.monotonic() - started
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            quick_failures = quick_failures + 1 if lived < _QUICK else 0
            if quick_failures >= self.max_quick_failures:
                log(ERROR, "ClientApp worker %d %s, the %d. start in a row to end within %.0f s: stopping this "
                    "SuperNode (see the worker's lines above)", process.pid, how, quick_failures, _QUICK)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            pause = 0.0 if quick_failures == 0 else min(30.0, 2.0 ** (quick_failures - 1))
            log(WARNING, "ClientApp worker %d %s after %.1f s; a message it was handling gets Flower's "
                "'ClientApp stopped responding' error; starting a new worker%s", process.pid, how, lived,
                f" in {pause:g} s" if pause else "")
            if self._stopping.wait(pause):
                return
            self._spawn()
