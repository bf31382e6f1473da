"""File helpers shared by the writers and readers: atomic replacement and provenance."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from raw_data.errors import MissingFileError


def library_version() -> str:
    """Return the installed version of this project, or ``"unknown"`` from a bare checkout."""
    try:
        return metadata.version("metai-exchange")
    except metadata.PackageNotFoundError:
        return "unknown"


def created_by() -> str:
    """Return the ``created_by`` string written into every file."""
    return f"metai-exchange raw_data {library_version()}"


def utc_now() -> str:
    """Return the current UTC time as ISO 8601, seconds precision."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def existing_file(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a Path, or raise :class:`MissingFileError` if it is not a file."""
    p = Path(path)
    if not p.is_file():
        raise MissingFileError("no such file; check the path", p)
    return p


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    A failed or interrupted write leaves no partial file: readers see either the old file
    or the complete new one (``os.replace`` is atomic within a file system).
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        # Cleanup must never hide the write's own error.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
