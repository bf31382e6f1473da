"""What ``metai-node serve`` keeps in its runtime directory between its starts: a lock and a state file.

- ``serve.lock`` is locked (``flock``) for as long as a serve runs, so a second serve of the same
  node is refused; the kernel releases the lock when the process ends, however it ends, so a
  serve that was killed never blocks the next one.
- ``serve.json`` (format ``metai-node-serve`` version 1) records the running serve (PID, start
  time, instance tag), its children's PIDs and start times, the SuperNode's node id, and
  whether it stopped cleanly. The next serve reads it: after a serve that did not stop cleanly
  it stops whatever of the old instance still runs (found by its tag, :func:`node.procs.tagged`)
  and tells the SuperLink that the old SuperNode is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.errors import NodeError
from node.private import make_dir, write_atomic
from node.procs import start_time

__all__ = ["STATE_FORMAT", "ServeAlreadyRunning", "ServeLock", "ServeState"]

STATE_FORMAT = "metai-node-serve"
STATE_VERSION = 1
LOCK_FILE = "serve.lock"
STATE_FILE = "serve.json"


class ServeAlreadyRunning(NodeError, RuntimeError):
    """Another ``metai-node serve`` holds this node's runtime directory."""


@dataclass
class ServeState:
    """The content of ``serve.json``."""

    pid: int
    start_time: int | None
    instance: str
    clean: bool = False
    node_id: int | None = None
    children: dict[str, list[int | None]] = field(default_factory=dict)  # name -> [pid, start time]
    format: str = STATE_FORMAT
    version: int = STATE_VERSION

    @classmethod
    def read(cls, path: Path) -> ServeState | None:
        """The state in ``path``; None if there is none or it is not a readable state file."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            state = cls(**data)
        except (OSError, ValueError, TypeError):
            return None
        return state if state.format == STATE_FORMAT and state.version == STATE_VERSION else None


class ServeLock:
    """Hold ``<runtime_dir>/serve.lock`` for the life of a serve and keep its ``serve.json``.

    Entering it takes the lock and reads what the previous serve recorded (:attr:`previous`).

    Raises:
        ServeAlreadyRunning: another serve holds the lock (on entering).
    """

    def __init__(self, runtime_dir: Path) -> None:
        self.dir = runtime_dir
        self.previous: ServeState | None = None
        self._fd: int | None = None

    def __enter__(self) -> ServeLock:
        make_dir(self.dir)
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            other = ServeState.read(self.dir / STATE_FILE)
            pid = f" (pid {other.pid})" if other is not None and start_time(other.pid) == other.start_time else ""
            raise ServeAlreadyRunning(f"another `metai-node serve`{pid} runs for this node (it holds "
                                      f"{self.dir / LOCK_FILE}); stop it first, or give this one another "
                                      "METAI_NODE_DIR") from None
        self._fd = fd
        self.previous = ServeState.read(self.dir / STATE_FILE)
        return self

    def record(self, state: ServeState) -> None:
        """Write ``state`` to ``serve.json`` (atomically)."""
        write_atomic(self.dir / STATE_FILE, (json.dumps(asdict(state), indent=2) + "\n").encode())

    def __exit__(self, *exc_info: Any) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
