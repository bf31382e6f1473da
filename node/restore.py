"""Restoring a node from a backup (``metai-node restore``): every byte checked, all or nothing.

The archive is extracted into a private temporary folder beside the target directory; each
file is checked against the size and SHA-256 its manifest gives, every file the manifest lists
must be there and nothing it does not list may be, modes are set as recorded, and ``node.json``
must name the hospital the manifest names (with a passphrase, the hospital key must unlock to
that address and the node secrets must unseal). Only then is the folder renamed to the target:
a damaged, truncated or foreign archive, a wrong passphrase or Ctrl-C leave no trace.
Symbolic links, hard links and devices in an archive are refused, never made.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from node.backup import Progress
from node.backup_format import (
    MANIFEST_MEMBER,
    MAX_MANIFEST_BYTES,
    NODE_PREFIX,
    BackupError,
    BackupManifest,
    check_relative,
)
from node.config import NodeInfo
from node.errors import KeyStoreError
from node.private import private_umask

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RestoreResult:
    """A node restored: where, from which manifest, and whether the passphrase was checked against it."""

    node_dir: Path
    manifest: BackupManifest
    passphrase_checked: bool


def restore(archive: Path, target: Path, *, passphrase: str | None = None,
            progress: Progress | None = None) -> RestoreResult:
    """Restore the node backed up in ``archive`` into the new directory ``target``.

    Parameters:
        archive: a file ``metai-node backup`` wrote (gzip- or otherwise compressed copies are read too).
        target: a directory that does not exist or is empty; missing parents are created.
        passphrase: if given, it must unlock the hospital key and the node secrets of the backup.
        progress: called as files are restored, with the bytes done and in all.

    Raises:
        BackupError: the target is not empty, or the archive is not a complete, undamaged node backup.
        KeyStoreError: the passphrase does not unlock the backup's key or secrets.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise BackupError(f"backup {archive} does not exist or is not a file; give the file `metai-node backup` wrote")
    _check_target(target)
    private_umask()
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.restore-"))
    try:
        manifest = _extract(archive, work, progress)
        _check_node(archive, work, manifest, passphrase)
        _check_target(target)  # again: something may have been put there meanwhile
        os.rename(work, target)  # replaces an empty directory; refuses one that is not
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    return RestoreResult(target, manifest, passphrase is not None)


def _check_target(target: Path) -> None:
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise BackupError(f"--dir {target} exists and is not a directory; give a new directory to restore into")
    if target.is_dir() and any(target.iterdir()):
        raise BackupError(f"--dir {target} is not empty; restore into a new or empty directory (a restore never "
                          "mixes a backup with what a directory holds)")


def _extract(archive: Path, work: Path, progress: Progress | None) -> BackupManifest:
    """Extract and check every member into ``work``; return the manifest."""
    try:
        with _opened(archive) as tar:
            manifest = _read_manifest(archive, tar)
            _extract_members(archive, tar, work, manifest, progress)
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError(f"backup {archive} is truncated or damaged ({exc}); nothing was restored: use another "
                          "copy of the backup") from None
    return manifest


@contextmanager
def _opened(archive: Path) -> Iterator[tarfile.TarFile]:
    """The archive, read as a stream (compressed or not)."""
    try:
        tar = tarfile.open(archive, mode="r|*")  # noqa: SIM115 (closed below, once the error is told apart)
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{archive} is not a node backup: it cannot be read as a tar archive ({exc}); give a "
                          "file `metai-node backup` wrote") from None
    with tar:
        yield tar


def _read_manifest(archive: Path, tar: tarfile.TarFile) -> BackupManifest:
    first = tar.next()
    if first is None or first.name != MANIFEST_MEMBER or not first.isreg() or first.size > MAX_MANIFEST_BYTES:
        found = "nothing" if first is None else repr(first.name)
        raise BackupError(f"{archive} is not a node backup: its first member is {found}, not {MANIFEST_MEMBER}; "
                          "give a file `metai-node backup` wrote")
    reader = tar.extractfile(first)
    assert reader is not None  # a regular file always has a reader
    raw = reader.read()
    try:
        return BackupManifest.from_json(raw)
    except BackupError as exc:
        raise BackupError(f"backup {archive}: {exc}") from None


def _extract_members(archive: Path, tar: tarfile.TarFile, work: Path, manifest: BackupManifest,
                     progress: Progress | None) -> None:
    expected = {f.path: f for f in manifest.files}
    for folder in manifest.directories:
        (work / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    restored: set[str] = set()
    total, done = manifest.total_bytes, 0
    while (member := tar.next()) is not None:
        # A TarFile keeps every member it read (attribute not in typeshed); a large store must not fill memory.
        tar.members.clear()  # type: ignore[attr-defined]
        rel = _node_path(archive, member.name)
        if member.isdir():
            if rel not in manifest.directories:
                raise BackupError(f"backup {archive} holds the folder {rel!r}, which its manifest does not list; it "
                                  "was altered: nothing was restored")
            continue
        entry = expected.get(rel)
        if not member.isreg() or entry is None or rel in restored:
            what = ("a link or device" if not member.isreg() else
                    "a file its manifest does not list" if entry is None else "a file it already held")
            raise BackupError(f"backup {archive} holds {rel!r}, {what}; it was altered or damaged: nothing was "
                              "restored")
        source = tar.extractfile(member)
        assert source is not None
        digest, size = hashlib.sha256(), 0
        with open(work / rel, "xb") as out:
            while block := source.read(_CHUNK):
                digest.update(block)
                out.write(block)
                size += len(block)
            out.flush()
            os.fsync(out.fileno())
        if size != entry.size or digest.hexdigest() != entry.sha256:
            raise BackupError(f"backup {archive}: {rel} is damaged (size {size}, SHA-256 {digest.hexdigest()}; its "
                              f"manifest says size {entry.size}, SHA-256 {entry.sha256}); nothing was restored: use "
                              "another copy of the backup")
        os.chmod(work / rel, entry.mode)
        restored.add(rel)
        done += size
        if progress is not None:
            progress("restoring", done, total)
    missing = [f.path for f in manifest.files if f.path not in restored]
    if missing:
        raise BackupError(f"backup {archive} is truncated: it ends after {len(restored)} of its {len(manifest.files)} "
                          f"files (the first missing is {missing[0]}); nothing was restored: use another copy")
    for folder, mode in sorted(manifest.directories.items(), key=lambda kv: -kv[0].count("/")):
        os.chmod(work / folder, mode)


def _node_path(archive: Path, name: str) -> str:
    prefix = f"{NODE_PREFIX}/"
    if not name.startswith(prefix):
        raise BackupError(f"backup {archive} holds {name!r}, outside its node/ folder; it was altered or is not a "
                          "node backup: nothing was restored")
    try:
        return check_relative(name[len(prefix):].rstrip("/"))
    except BackupError as exc:
        raise BackupError(f"backup {archive}: {exc}") from None


def _check_node(archive: Path, work: Path, manifest: BackupManifest, passphrase: str | None) -> None:
    """The restored node.json names the manifest's hospital; with a passphrase, the key and secrets open."""
    from node.keys import load_key, load_secrets

    info = NodeInfo.load(work)
    if info.hospital_address != manifest.hospital_address:
        raise BackupError(f"backup {archive}: its node.json names hospital {info.hospital_address}, its manifest "
                          f"{manifest.hospital_address}; it was altered: nothing was restored")
    if passphrase is None:
        return
    try:
        address = load_key(work, passphrase).address
        load_secrets(work, passphrase)
    except KeyStoreError as exc:
        reason = "wrong passphrase" if "wrong passphrase" in str(exc) else str(exc).replace(str(work), "<backup>")
        raise KeyStoreError(f"the passphrase does not unlock the hospital key and node secrets of backup {archive} "
                            f"({reason}); nothing was restored") from None
    if address != info.hospital_address:
        raise BackupError(f"backup {archive}: its hospital key is the key of {address}, not of "
                          f"{info.hospital_address}; nothing was restored")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
