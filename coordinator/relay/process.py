"""The consent relay in a process of its own, started, watched and stopped by the service.

In the service's own process the relay's work (signing batches, reading receipts with their
hundred events, settling items) competes with the HTTP requests for the interpreter's lock:
measured under load, it held that lock a fifth of the time and the requests waited. As a child
process it runs beside them on another core.

How the two talk: the service writes the child's configuration as one JSON line to the child's
standard input and keeps that pipe open; each accepted consent is one byte down it (a wake-up,
so the relay does not wait for its next look). The outbox itself is the database both share.
End of file on that pipe means the service is gone: the child stops after its current batch.
The child also asks Linux to send it SIGTERM when the service's process dies, so a service
killed with SIGKILL never leaves a relay behind for long; and while a relay from before still
runs, the next one waits for the outbox's lease (see :mod:`coordinator.relay.worker`), so two
never send the same items.

A child that dies on its own (a crash, SIGKILL) is started again after a pause; the outbox makes
that safe, as it makes a restart of the whole service safe.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

_log = logging.getLogger("metai.coordinator.relay")
_RESTART_PAUSE = 2.0
_PR_SET_PDEATHSIG = 1


class RelayProcess:
    """Runs the relay as a child process while the service runs.

    Parameters:
        config: what the child needs: ``database_url``, ``rpc_url``, ``manifest``, ``batch``,
            ``wait``, ``log_json``.
        relayer: the unlocked relayer key (given to the child through its pipe, never on a
            command line or in its environment).
    """

    def __init__(self, config: dict[str, Any], relayer: LocalAccount) -> None:
        self._config = dict(config)
        self._relayer = relayer
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._pipe: IO[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The running child's process id (None when none runs)."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def running(self) -> bool:
        """Whether the child runs now."""
        return self.pid is not None

    def start(self) -> None:
        """Start the child, and a thread that starts it again if it dies before :meth:`stop`."""
        self._stopping.clear()
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="relay-watcher", daemon=True)
        self._watcher.start()

    def notify(self) -> None:
        """Wake the child: a consent was accepted. Never blocks; a full pipe already holds wake-ups."""
        with self._lock:
            pipe = self._pipe
            if pipe is None:
                return
            try:
                os.write(pipe.fileno(), b"\n")
            except BlockingIOError:
                pass
            except OSError as exc:  # the child is gone; the watcher starts another
                if exc.errno not in (errno.EPIPE, errno.EBADF):
                    raise

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the child to stop after its current batch (end of file on its pipe); wait, then insist."""
        self._stopping.set()
        with self._lock:
            child, pipe, self._pipe = self._child, self._pipe, None
        if pipe is not None:
            pipe.close()
        if child is not None:
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                _log.warning("the relay process %d did not stop within %.0f s; terminating it", child.pid, timeout)
                child.terminate()
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
        if self._watcher is not None:
            self._watcher.join(timeout)
            self._watcher = None

    # ------------------------------------------------------------------ internals

    def _spawn(self) -> None:
        config = {**self._config, "relayer_key": self._relayer.key.hex(), "parent": os.getpid()}
        child = subprocess.Popen([sys.executable, "-m", "coordinator.relay"], stdin=subprocess.PIPE,
                                 cwd=os.getcwd(), env=_child_env())
        assert child.stdin is not None
        child.stdin.write(json.dumps(config).encode() + b"\n")
        child.stdin.flush()
        os.set_blocking(child.stdin.fileno(), False)
        with self._lock:
            self._child, self._pipe = child, child.stdin
        _log.info("relay process %d started", child.pid)

    def _watch(self) -> None:
        """Wait on the child; if it ends before :meth:`stop`, say so and start another after a pause."""
        while not self._stopping.is_set():
            child = self._child
            if child is None:
                return
            code = child.wait()
            if self._stopping.is_set():
                return
            _log.error("the relay process %d ended unexpectedly (exit status %s); starting another in %.0f s",
                       child.pid, code, _RESTART_PAUSE)
            with self._lock:
                if self._pipe is not None:
                    self._pipe.close()
                self._pipe = None
            if self._stopping.wait(_RESTART_PAUSE):
                return
            self._spawn()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the project, for ``-m coordinator.relay`` to import
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _die_with_parent(parent: int) -> bool:
    """Ask Linux for SIGTERM when the parent dies; False if it is gone already."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the pipe's end of file still tells
        pass
    return os.getppid() == parent  # asked after prctl: a parent that died before it is seen here


def child_main() -> int:
    """The child's body: read the configuration, hold the lease, relay until the pipe closes."""
    from contracts.exchange import Exchange
    from coordinator.core import logs
    from coordinator.core.db import Database
    from coordinator.relay.worker import Relay

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the service decides
    line = sys.stdin.buffer.readline()
    if not line:
        return 0
    config = json.loads(line)
    if not _die_with_parent(int(config["parent"])):
        return 0
    def on_term(_signum: int, _frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: the relay stops after its batch
        raise SystemExit(0)  # out of the read below, into the finally that stops the relay

    signal.signal(signal.SIGTERM, on_term)
    writer = logs.configure(bool(config["log_json"]))
    relay: Relay | None = None
    db: Database | None = None
    try:
        db = Database(config["database_url"])
        exchange = Exchange.connect(config["rpc_url"], Path(config["manifest"]))
        relayer: LocalAccount = Account.from_key(config.pop("relayer_key"))
        relay = Relay(db, exchange.consent, relayer, batch=int(config["batch"]), wait=float(config["wait"]))
        relay.start()
        while os.read(0, 4096):  # end of file: the service closed the pipe, or died
            relay.notify()
        return 0
    except SystemExit:
        return 0
    except Exception:
        logging.getLogger("metai.coordinator.relay").exception("the relay process failed")
        return 1
    finally:
        if relay is not None:
            relay.stop()
        if db is not None:
            db.close()
        writer.stop()
