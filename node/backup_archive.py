"""Writing a node backup (``metai-node backup``): the snapshot of :mod:`node.backup` as one archive.

The archive is written to a temporary file beside ``--out`` and given its name only once it is
complete and flushed to disk, so a backup that fails or is killed never leaves a file under
that name; an existing file is never overwritten. The archive is created mode 0600.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import importlib.metadata
import io
import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from node.backup import Progress, Snapshot, take_snapshot
from node.backup_format import MANIFEST_MEMBER, BackupError, BackupFile, BackupManifest, member_name
from node.private import private_umask

_CHUNK = 1 << 20


@dataclass(frozen=True)
class BackupResult:
    """A backup written: where, its manifest, the archive's own size and SHA-256, and notes for the operator."""

    path: Path
    manifest: BackupManifest
    size: int
    sha256: str
    notes: tuple[str, ...]


def make_backup(node_dir: Path, out: Path, progress: Progress | None = None) -> BackupResult:
    """Back the node in ``node_dir`` up into the new archive ``out``.

    Raises:
        NodeConfigError: ``node_dir`` holds no node.
        BackupError: ``out`` exists or its folder does not, a file every node has is missing, or a
            store file changed while it was written.
    """
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise BackupError(f"--out {out} exists; give a new file name (a backup never overwrites a file)")
    if not out.parent.is_dir():
        raise BackupError(f"the folder of --out does not exist ({out.parent}); create it first")
    private_umask()  # the staging copies and the archive hold the node's files: private like the node
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.staging-") as staging:
        snap = take_snapshot(Path(node_dir), Path(staging), progress)
        manifest = _manifest(snap)
        fd, partial = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as raw:
                hashing = _HashingWriter(raw)
                _write(hashing, snap, manifest, progress)
                raw.flush()
                os.fsync(raw.fileno())
            _publish(Path(partial), out)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return BackupResult(out, manifest, hashing.size, hashing.digest.hexdigest(), tuple(snap.notes))


def _manifest(snap: Snapshot) -> BackupManifest:
    from contracts.manifest import read_manifest

    deployment = read_manifest(snap.staging / snap.info.manifest)
    try:
        software = importlib.metadata.version("metai-exchange")
    except importlib.metadata.PackageNotFoundError:
        software = "unknown"
    directories = dict(sorted(snap.directories.items(), key=lambda kv: (kv[0].count("/"), kv[0])))
    return BackupManifest(
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        hospital_name=snap.info.hospital_name, hospital_address=snap.info.hospital_address,
        chain_id=deployment.chain_id, directories=directories, files=(*snap.staged, *snap.store),
        catalog=snap.catalog_counts, left_out=tuple(snap.left_out), software=software)


def _write(raw: _HashingWriter, snap: Snapshot, manifest: BackupManifest, progress: Progress | None) -> None:
    total, done = manifest.total_bytes, 0
    text = manifest.to_json()
    _header(raw, _info(MANIFEST_MEMBER, len(text), 0o600))
    _data(raw, io.BytesIO(text), len(text))
    for folder, mode in manifest.directories.items():
        info = _info(member_name(folder), 0, mode)
        info.type = tarfile.DIRTYPE
        _header(raw, info)
    for entry, root in [*((f, snap.staging) for f in snap.staged), *((f, snap.node_dir) for f in snap.store)]:
        _add(raw, entry, root / entry.path)
        done += entry.size
        if progress is not None:
            progress("writing the archive", done, total)
    # The end of a tar: two zero blocks, the whole padded to tar's record size.
    end = raw.size + 2 * tarfile.BLOCKSIZE
    raw.write(tarfile.NUL * (2 * tarfile.BLOCKSIZE + (-end) % tarfile.RECORDSIZE))


def _add(raw: _HashingWriter, entry: BackupFile, path: Path) -> None:
    """Add ``path`` as ``entry``, refusing it if its bytes are no longer those checked."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        _header(raw, _info(member_name(entry.path), entry.size, entry.mode))
        digest = _data(raw, src, entry.size)
    if digest != entry.sha256:
        raise BackupError(f"{path} changed while the backup was written (its SHA-256 is no longer {entry.sha256}); "
                          "run `metai-node verify`, then the backup again")


# Members are written with TarInfo.tobuf rather than through a TarFile, which keeps every member it
# wrote in memory: a store of millions of records must not fill it.
def _header(raw: _HashingWriter, info: tarfile.TarInfo) -> None:
    raw.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))


def _data(raw: _HashingWriter, src: BinaryIO, size: int) -> str:
    """Copy exactly ``size`` bytes of ``src``, padded to whole blocks; return their hex SHA-256."""
    digest, left = hashlib.sha256(), size
    while left:
        block = src.read(min(_CHUNK, left))
        if not block:
            raise BackupError(f"{getattr(src, 'name', 'a file')} shrank while the backup was written; run the backup "
                              "again")
        digest.update(block)
        raw.write(block)
        left -= len(block)
    raw.write(tarfile.NUL * ((-size) % tarfile.BLOCKSIZE))
    return digest.hexdigest()


def _info(name: str, size: int, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, mode
    info.mtime = int(_dt.datetime.now(_dt.UTC).timestamp())
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _publish(partial: Path, out: Path) -> None:
    """Give the complete archive its name, never replacing a file that appeared meanwhile."""
    try:
        os.link(partial, out)
    except FileExistsError:
        raise BackupError(f"--out {out} appeared while the backup was written; give a new file name") from None
    except OSError as exc:  # a file system without hard links: check, then rename (a race is left to the operator)
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK) or out.exists():
            raise
        os.rename(partial, out)
    else:
        partial.unlink()
    dir_fd = os.open(out.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class _HashingWriter:
    """Writes through to a file, hashing and counting what was written."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        self._raw.write(data)
        self.digest.update(data)
        self.size += len(data)
