"""File helpers: atomic replacement of a file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` and move it onto ``path`` only on success.

    Readers see the old file or the complete new one, never a partial write: ``os.replace``
    is atomic within one file system. A failed write leaves no temporary file behind.
    """
    target = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        # The write's own error is the one to report; a failed unlink must not replace it.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
