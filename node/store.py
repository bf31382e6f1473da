"""Content-addressed storage of de-identified objects under ``<node>/store``."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

STORE_DIR = "store"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def put(node_dir: Path, content: bytes, suffix: str) -> tuple[str, str]:
    """Store ``content`` under its sha256; return (sha256, path relative to ``node_dir``).

    Writing is atomic (temporary file, then rename) and idempotent: storing the same bytes
    again rewrites nothing.
    """
    digest = hashlib.sha256(content).hexdigest()
    rel = Path(STORE_DIR) / digest[:2] / f"{digest}{suffix}"
    dest = node_dir / rel
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(content)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return digest, rel.as_posix()
