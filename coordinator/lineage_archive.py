"""A completed study's lineage bundle as one tar archive, streamed file by file (for auditors).

The archive holds ``bundle.json`` and exactly the files it lists, under one folder
``study-<id>-lineage/``, in the index's order after the index itself, but for the cohort
manifests hospitals in sealed mode hold (listed by hash only; the auditor gets them from the
hospitals). It is served only if the index still hashes to the lineage hash anchored on chain
and every other listed file is there; the files' SHA-256 are the auditor's to check against the
index (``metai-audit verify``).
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from eth_utils.crypto import keccak

from coordinator.lineage import INDEX, LineageError, held_manifests, read_index

__all__ = ["LineageIncomplete", "LineageMismatch", "archive_name", "bundle_members", "tar_chunks"]

_BLOCK = 512
_CHUNK = 1 << 20


class LineageMismatch(LineageError):
    """The stored index is not the one anchored on chain."""


class LineageIncomplete(LineageError):
    """A file the index lists is missing, or the index names a path outside the bundle."""


def archive_name(study_id: int) -> str:
    """The archive's top folder (and, with ``.tar``, its file name)."""
    return f"study-{study_id}-lineage"


def bundle_members(folder: Path, anchored: bytes) -> list[str]:
    """The files of the bundle in ``folder`` to archive: the index, then every file it lists that the
    coordinator holds (not the manifests of ``manifests_held``, which stay with their hospitals).

    Raises:
        LineageError: no readable index (a study completed before bundles were kept, or a lost folder).
        LineageMismatch: the index does not hash to ``anchored``.
        LineageIncomplete: a listed file is missing, or a listed name leaves the bundle's folder.
    """
    data, index = read_index(folder)
    if keccak(data) != anchored:
        raise LineageMismatch(f"{folder / INDEX} hashes to 0x{keccak(data).hex()}, the chain anchors "
                              f"0x{anchored.hex()}")
    try:
        held = held_manifests(folder, int(index.get("rounds", 0)))
    except LineageError as exc:
        raise LineageIncomplete(str(exc)) from None
    names = [name for name in index["files"] if name not in held]
    for name in names:
        parts = PurePosixPath(name).parts
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts or name == INDEX:
            raise LineageIncomplete(f"{folder / INDEX} lists {name!r}, which is not a file of the bundle")
        if not (folder / name).is_file():
            raise LineageIncomplete(f"{folder / name} is missing; the index lists it")
    return [INDEX, *names]


def tar_chunks(folder: Path, names: list[str], root: str) -> Iterator[bytes]:
    """The POSIX (pax) tar of ``names`` in ``folder``, as ``root/<name>``, in pieces of at most 1 MiB.

    Raises:
        LineageIncomplete: a file changed size while it was being sent (the archive is then cut short).
    """
    for name in names:
        path = folder / name
        info = tarfile.TarInfo(f"{root}/{name}")
        stat = path.stat()
        info.size, info.mtime, info.mode = stat.st_size, int(stat.st_mtime), 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        sent = 0
        with path.open("rb") as fh:
            while chunk := fh.read(min(_CHUNK, info.size - sent)):
                sent += len(chunk)
                yield chunk
        if sent != info.size:
            raise LineageIncomplete(f"{path} changed size while it was sent ({sent} of {info.size} bytes)")
        yield bytes(-sent % _BLOCK)
    yield bytes(2 * _BLOCK)  # two zero blocks end a tar archive
