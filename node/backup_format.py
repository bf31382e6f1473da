"""The node backup archive: a tar whose first member is a manifest listing every file with its SHA-256.

Layout (an uncompressed POSIX tar, ``metai-node backup`` writes it, ``metai-node restore`` reads it)::

    metai-backup.json          the manifest (format ``metai-node-backup`` version 1), always first
    node/                      the node directory's folders, then its files, paths as in the node
    node/node.json ...

The manifest names the hospital (name, address), the chain id of its deployment, when the
backup was made, each folder with its mode, each file with its size, mode and SHA-256, the
catalog's counts, and what the backup left out with the reason. A tool that knows nothing of
MeTAI still extracts the archive (``tar -xf``) and checks it (``sha256sum`` against the manifest).

The hashes detect a damaged or truncated archive. They do not authenticate it: whoever can
rewrite the archive can rewrite its manifest too, so keep the archive, or the archive's own
SHA-256 that ``backup`` prints, where others cannot write.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

from node.errors import NodeError

FORMAT = "metai-node-backup"
VERSION = 1
#: The archive member holding the manifest, always the first one.
MANIFEST_MEMBER = "metai-backup.json"
#: The folder of the archive holding the node directory's content.
NODE_PREFIX = "node"
#: A manifest larger than this is not one (a node's manifest is a few hundred bytes per file).
MAX_MANIFEST_BYTES = 256 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BackupError(NodeError, ValueError):
    """A backup cannot be made, or an archive is not a complete, undamaged node backup."""


@dataclass(frozen=True)
class BackupFile:
    """One file of the node directory in the archive."""

    #: Relative to the node directory, ``/``-separated.
    path: str
    size: int
    #: Permission bits (``0o600`` for every file the node writes itself).
    mode: int
    sha256: str


@dataclass(frozen=True)
class LeftOut:
    """Something of the node directory the backup does not hold, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class BackupManifest:
    """What an archive holds."""

    created_at: str
    hospital_name: str
    hospital_address: str
    chain_id: int
    #: Folders (relative paths) -> permission bits, parents before children.
    directories: dict[str, int]
    files: tuple[BackupFile, ...]
    #: Counts of the catalog snapshot: records, patients, enrolled patients, datasets.
    catalog: dict[str, int] = field(default_factory=dict)
    left_out: tuple[LeftOut, ...] = ()
    #: The installed metai-exchange version that wrote it ("unknown" outside an installed tree).
    software: str = "unknown"

    @property
    def total_bytes(self) -> int:
        """The size of every file together."""
        return sum(f.size for f in self.files)

    def to_json(self) -> bytes:
        """The manifest member's bytes."""
        data: dict[str, Any] = {"format": FORMAT, "version": VERSION, **asdict(self)}
        # Modes as octal text ("0600"), as chmod and ls show them.
        data["directories"] = {path: _octal(mode) for path, mode in self.directories.items()}
        data["files"] = [{**asdict(f), "mode": _octal(f.mode)} for f in self.files]
        return (json.dumps(data, indent=1) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes) -> BackupManifest:
        """The manifest in ``raw``.

        Raises:
            BackupError: not JSON, another format or version, or a field missing or malformed.
        """
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BackupError(f"its manifest {MANIFEST_MEMBER} is not JSON ({exc}); the archive is damaged") from None
        if not isinstance(data, dict) or (data.get("format"), data.get("version")) != (FORMAT, VERSION):
            found = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
            raise BackupError(f"its manifest is {found}, expected format {FORMAT!r} version {VERSION}; "
                              "restore it with the metai-node version that wrote it")
        try:
            files = tuple(BackupFile(str(f["path"]), int(f["size"]), int(str(f["mode"]), 8), str(f["sha256"]))
                          for f in data["files"])
            directories = {str(k): int(str(v), 8) for k, v in data["directories"].items()}
            manifest = cls(str(data["created_at"]), str(data["hospital_name"]), str(data["hospital_address"]),
                           int(data["chain_id"]), directories, files,
                           {str(k): int(v) for k, v in data.get("catalog", {}).items()},
                           tuple(LeftOut(str(x["path"]), str(x["reason"])) for x in data.get("left_out", [])),
                           str(data.get("software", "unknown")))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackupError(f"its manifest lacks or garbles a field ({exc!r}); the archive is damaged") from None
        manifest.check()
        return manifest

    def check(self) -> None:
        """Refuse paths that would leave the node directory, repeated paths, bad modes or hashes.

        Raises:
            BackupError: naming the first such entry.
        """
        seen: set[str] = set()
        for path, mode in [*self.directories.items(), *((f.path, f.mode) for f in self.files)]:
            check_relative(path)
            if path in seen:
                raise BackupError(f"its manifest lists {path!r} twice; the archive is damaged")
            seen.add(path)
            if not 0 <= mode <= 0o777:
                raise BackupError(f"its manifest gives {path!r} mode {mode:o}, not permission bits; the archive is "
                                  "damaged")
        for f in self.files:
            if not _SHA256.fullmatch(f.sha256) or f.size < 0:
                raise BackupError(f"its manifest gives {f.path!r} the hash {f.sha256!r} and size {f.size}; "
                                  "the archive is damaged")
            parent = str(PurePosixPath(f.path).parent)
            if parent != "." and parent not in self.directories:
                raise BackupError(f"its manifest lists {f.path!r} but not its folder; the archive is damaged")


def _octal(mode: int) -> str:
    return f"{mode:04o}"


def check_relative(path: str) -> str:
    """Return ``path`` if it is a plain relative path inside the node directory.

    Raises:
        BackupError: it is absolute, empty, or has ``.``, ``..`` or empty parts.
    """
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise BackupError(f"the path {path!r} would not stay inside the node directory; the archive is damaged or "
                          "was not made by metai-node backup")
    return path


def member_name(path: str) -> str:
    """The archive member of the node's ``path``."""
    return f"{NODE_PREFIX}/{path}"
