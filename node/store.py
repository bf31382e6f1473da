"""Content-addressed storage of de-identified objects under ``<node>/store``.

A stored object is named by the sha256 of its bytes, so writing is idempotent and the name
proves the content. Folders are 0700 and files 0600 (:mod:`node.private`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from node.private import make_dir, write_atomic

STORE_DIR = "store"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """The hex sha256 of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def store_path(digest: str, suffix: str) -> Path:
    """Where the object with sha256 ``digest`` lies, relative to the node directory."""
    return Path(STORE_DIR) / digest[:2] / f"{digest}{suffix}"


def put(node_dir: Path, content: bytes, suffix: str, digest: str | None = None) -> tuple[str, str]:
    """Store ``content`` under its sha256; return (sha256, path relative to ``node_dir``).

    Writing is atomic (temporary file, then rename) and idempotent: storing the same bytes
    again rewrites nothing. ``digest`` saves hashing again when the caller has it.
    """
    digest = digest or hashlib.sha256(content).hexdigest()
    rel = store_path(digest, suffix)
    dest = node_dir / rel
    if not dest.parent.is_dir():
        make_dir(dest.parent)
    write_atomic(dest, content, replace=False)
    return digest, rel.as_posix()
