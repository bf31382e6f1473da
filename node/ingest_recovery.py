"""One ingest at a time per node, and the recovery that undoes what a killed ingest left.

``<node>/ingest.lock`` is locked (``flock``) for the whole run, by the ingest process and
the workers it forks, so the kernel releases it when the last of them ends, however it ends.
The file says ``clean`` after a run that finished and ``running`` while one runs; finding
``running`` (or an old node's empty file) at the start means the last run was killed, and the
full recovery runs:

- every file in ``tmp/`` goes (always, not only after a kill);
- ``.tmp-`` files of unfinished atomic writes in ``store/`` and ``quarantine/`` go;
- a stored file that no catalog record names goes (its record was in an uncommitted batch;
  the source is still in place, since good sources are never touched, and is ingested again);
- a quarantine copy (with its reason file) that no catalog row names goes (its source was not
  yet removed: sources are removed only after their row is committed, so it is quarantined again).

After recovery, catalog rows and files agree again: every record has its stored file, every
quarantine row its copy, and nothing else is in those folders.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from sqlalchemy import select

from node.catalog import QuarantineEntry, Record
from node.errors import IngestError
from node.ingest_work import TMP_DIR
from node.node import Node
from node.private import FILE_MODE, TMP_PREFIX, make_dir
from node.quarantine import QUARANTINE_DIR, REASON_SUFFIX
from node.store import STORE_DIR

LOCK_FILE = "ingest.lock"
#: Seconds to wait for the lock: the workers of a killed run take a moment to die.
LOCK_WAIT = 10.0
_CLEAN, _RUNNING = b"clean\n", b"running\n"


@dataclass
class Recovery:
    """What the recovery removed."""

    temporary: int = 0
    stored_without_record: int = 0
    quarantined_without_row: int = 0
    records_without_file: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Sentences for the ingest summary (none if there was nothing to do)."""
        out = []
        removed = self.temporary + self.stored_without_record + self.quarantined_without_row
        if removed:
            out.append(f"an earlier ingest was interrupted: removed {self.temporary} temporary files, "
                       f"{self.stored_without_record} stored files without a catalog record and "
                       f"{self.quarantined_without_row} quarantine copies without a catalog row")
        if self.records_without_file:
            out.append(f"{len(self.records_without_file)} catalog records have no stored file (first: "
                       f"{self.records_without_file[0]}); run `metai-node verify`")
        return out


class IngestLock:
    """The node's ingest lock; tells whether the previous run ended cleanly.

    Parameters:
        node_dir: the node directory.
        wait: seconds to wait for the lock (default :data:`LOCK_WAIT`).

    Raises:
        IngestError: (on entering) another ingest holds the lock.
    """

    def __init__(self, node_dir: Path, *, wait: float | None = None) -> None:
        self.path = node_dir / LOCK_FILE
        self.wait = LOCK_WAIT if wait is None else wait
        self.previous_clean = False
        self._fd = -1

    def __enter__(self) -> IngestLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise IngestError(
                        f"another ingest is running on this node ({self.path} is locked); wait for it to end"
                    ) from None
                time.sleep(0.05)
        self._fd = fd
        self.previous_clean = os.pread(fd, 64, 0) == _CLEAN
        self._write(_RUNNING)
        return self

    def mark_clean(self) -> None:
        """Record that this run finished: the next one needs no full recovery."""
        self._write(_CLEAN)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        os.close(self._fd)  # releases the lock (forked workers have ended by now)
        self._fd = -1

    def _write(self, state: bytes) -> None:
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, state, 0)


def recover(node: Node, *, full: bool) -> Recovery:
    """Remove temporary files, and (``full``) reconcile the store and quarantine with the catalog."""
    result = Recovery()
    tmp = node.dir / TMP_DIR
    if tmp.is_dir():
        for entry in list(tmp.iterdir()):
            _remove(entry)
            result.temporary += 1
    make_dir(tmp)
    if not full:
        return result
    with node.sessions() as session:
        record_paths = set(session.scalars(select(Record.path)))
        quarantine_paths = set(session.scalars(select(QuarantineEntry.quarantine_path)))
    kept: set[str] = set()
    for folder in sorted((node.dir / STORE_DIR).glob("*")):
        for path in sorted(folder.iterdir()) if folder.is_dir() else ():
            rel = path.relative_to(node.dir).as_posix()
            if path.name.startswith(TMP_PREFIX):
                _remove(path)
                result.temporary += 1
            elif rel not in record_paths:
                _remove(path)
                result.stored_without_record += 1
            else:
                kept.add(rel)
    result.records_without_file = sorted(record_paths - kept)
    qdir = node.dir / QUARANTINE_DIR
    for path in sorted(qdir.iterdir()) if qdir.is_dir() else ():
        if path.name.startswith(TMP_PREFIX):
            _remove(path)
            result.temporary += 1
            continue
        copy = path.with_name(path.name.removesuffix(REASON_SUFFIX))
        if copy.relative_to(node.dir).as_posix() not in quarantine_paths:
            existed = path.exists()
            _remove(path)
            if existed and not path.name.endswith(REASON_SUFFIX):
                result.quarantined_without_row += 1
    return result


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
