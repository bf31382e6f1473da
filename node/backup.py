"""What a node backup holds, taken as a consistent snapshot while the node may be serving.

A backup holds what cannot be made again (docs/node.md#backup-and-restore says why for each):

- ``node.json`` and the deployment manifest copy it names: which hospital, which chain;
- ``hospital-key.json`` (the hospital's chain key, a passphrase-encrypted keystore) and
  ``secrets.json`` (the keys sealing the pseudonym map and deriving pseudonyms, sealed with the
  passphrase): both as they are on disk, still encrypted;
- ``catalog.sqlite``: patients (the sealed pseudonym map), enrolments, records, datasets;
  copied with SQLite's online backup API, one read transaction, so committed transactions only,
  whatever another process is writing (a file copy of a WAL database can be torn);
- ``store/``: the de-identified records the catalog names, each checked against its record id
  (its SHA-256) first; a record's bytes are what the dataset roots on chain commit to;
- ``federation/``: the SuperNode key pair the coordinator operator registered;
- ``cohorts/``: each round's kept cohort, the manifest as sent, and the publication markers.

The catalog is snapshot first and the store listed from the snapshot: an ingest writes a
record's file before it commits its row, so every row of the snapshot has its file. Other files
are read whole from one open descriptor, and the node replaces them by renaming, so each is one
complete version. Nothing is written into the node directory.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from node.backup_format import BackupError, BackupFile, LeftOut, check_relative
from node.catalog import CATALOG_FILE
from node.config import NODE_FILE, NodeInfo
from node.federation_key import FEDERATION_DIR
from node.kept_cohort import COHORTS_DIR
from node.kept_reply import REPLIES_DIR
from node.keys import KEY_FILE, SECRETS_FILE
from node.pacs import INBOX_DIR
from node.quarantine import QUARANTINE_DIR
from node.store import STORE_DIR

#: (phase, bytes done, bytes in the phase) after each file.
Progress = Callable[[str, int, int], None]
_CHUNK = 1 << 20
#: Seconds to wait for a lock on the catalog (another process checkpointing it).
CATALOG_WAIT = 30.0
#: Entries of a node directory a backup leaves out on purpose, and why.
LEFT_OUT = {
    QUARANTINE_DIR: "untouched originals of files that failed ingest, every identifier in them; the exports or the "
                    "PACS they came from still hold them (the catalog keeps each one's reason)",
    INBOX_DIR: "identifying DICOM downloaded from the PACS, pulled again by import-pacs",
    # node.ingest_work.TMP_DIR and node.ingest_recovery.LOCK_FILE, named here so a backup does not load the
    # readers they come with (tests/node/test_backup.py checks the names agree).
    "tmp": "transient copies an ingest makes, removed by the next ingest",
    "ingest.lock": "the ingest lock, made again by the next ingest",
}
_CATALOG_FILES = {CATALOG_FILE, f"{CATALOG_FILE}-wal", f"{CATALOG_FILE}-shm", f"{CATALOG_FILE}-journal"}
_UNKNOWN = "not part of a node's state (a passphrase file, for one, must never travel with the backup)"


@dataclass
class Snapshot:
    """The node's state, staged: small files copied into ``staging``, the store's files checked in place."""

    node_dir: Path
    staging: Path
    info: NodeInfo
    #: Files copied into ``staging`` (same relative paths).
    staged: list[BackupFile] = field(default_factory=list)
    #: Store files checked against their record ids, to be read from ``node_dir``.
    store: list[BackupFile] = field(default_factory=list)
    directories: dict[str, int] = field(default_factory=dict)
    left_out: list[LeftOut] = field(default_factory=list)
    catalog_counts: dict[str, int] = field(default_factory=dict)
    #: Sentences for the operator (a round that was being anchored during the backup).
    notes: list[str] = field(default_factory=list)


def take_snapshot(node_dir: Path, staging: Path, progress: Progress | None = None) -> Snapshot:
    """Copy the node's small files and a catalog snapshot into ``staging``; check the store's files.

    Parameters:
        node_dir: the node directory (read only: nothing in it is written).
        staging: an empty private folder on the disk the archive goes to.
        progress: called as the store's files are checked.

    Raises:
        NodeConfigError: ``node_dir`` holds no node.
        BackupError: a file every node has (key, secrets, catalog, manifest copy) is missing or unreadable.
    """
    info = NodeInfo.load(node_dir)
    snap = Snapshot(node_dir, staging, info)
    snap.catalog_counts, records = _snapshot_catalog(node_dir / CATALOG_FILE, staging / CATALOG_FILE)
    snap.staged.append(_described(staging / CATALOG_FILE, CATALOG_FILE, os.stat(node_dir / CATALOG_FILE).st_mode))
    for name in (NODE_FILE, check_relative(info.manifest), KEY_FILE, SECRETS_FILE):
        if not (node_dir / name).is_file():
            raise BackupError(f"{node_dir / name} is missing: every node has it; restore the node from an earlier "
                              "backup instead of backing this one up")
        _stage(snap, name)
    for folder in (FEDERATION_DIR, COHORTS_DIR, REPLIES_DIR):
        for rel in _files_under(snap, folder):
            if rel.endswith(".tmp") or Path(rel).name.startswith(".tmp-"):
                snap.left_out.append(LeftOut(rel, "a write under way (renamed into place when complete)"))
            else:
                _stage(snap, rel)
    _note_rounds_in_flight(snap)
    _check_store(snap, records, progress)
    _left_out_entries(snap, {NODE_FILE, info.manifest, KEY_FILE, SECRETS_FILE, FEDERATION_DIR, COHORTS_DIR,
                             REPLIES_DIR, STORE_DIR, *_CATALOG_FILES})
    return snap


def _snapshot_catalog(source: Path, dest: Path) -> tuple[dict[str, int], list[tuple[str, str, int]]]:
    """Copy the catalog with SQLite's backup API (one step: one read transaction); return its counts and records."""
    if not source.is_file():
        raise BackupError(f"no catalog at {source}; the node's catalog is lost: restore the node from an earlier "
                          "backup instead of backing this one up")
    # Read-only: the backup never changes the catalog, and never checkpoints it when it closes.
    src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, timeout=CATALOG_WAIT)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # pages=-1: the whole database in one step, so no other writer interleaves
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file (the node turns WAL on again)
            if (check := dst.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
                raise BackupError(f"the catalog {source} fails SQLite's integrity check ({check}); restore the node "
                                  "from an earlier backup")
            counts = {name: int(dst.execute(query).fetchone()[0]) for name, query in _COUNTS.items()}
            records = [(str(r), str(p), int(s)) for r, p, s in
                       dst.execute("SELECT record_id, path, size FROM records ORDER BY path")]
        finally:
            dst.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot read the catalog {source} ({exc}); restore the node from an earlier "
                          "backup") from None
    finally:
        src.close()
    os.chmod(dest, 0o600)
    return counts, records


_COUNTS = {
    "records": "SELECT count(*) FROM records",
    "patients": "SELECT count(*) FROM patients",
    "enrolled": "SELECT count(*) FROM patients WHERE address IS NOT NULL",
    "datasets": "SELECT count(*) FROM datasets",
}


def _stage(snap: Snapshot, rel: str) -> None:
    """Copy ``rel`` from the node into staging (one open descriptor, no link followed), hashing it."""
    source, dest = snap.node_dir / rel, snap.staging / rel
    _add_parents(snap, rel)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise BackupError(f"cannot read {source} ({exc.strerror}); check the node directory's owner and "
                          "modes") from None
    with os.fdopen(fd, "rb") as src, open(dest, "xb") as out:
        mode = os.fstat(src.fileno()).st_mode
        digest, size = hashlib.sha256(), 0
        while block := src.read(_CHUNK):
            digest.update(block)
            out.write(block)
            size += len(block)
    os.chmod(dest, 0o600)
    snap.staged.append(BackupFile(rel, size, stat.S_IMODE(mode), digest.hexdigest()))


def _described(path: Path, rel: str, mode: int) -> BackupFile:
    size, digest = hash_file(path)
    return BackupFile(rel, size, stat.S_IMODE(mode), digest)


def hash_file(path: Path) -> tuple[int, str]:
    """The size and hex SHA-256 of the file at ``path`` (a symbolic link is not followed)."""
    digest, size = hashlib.sha256(), 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as src:
        while block := src.read(_CHUNK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _files_under(snap: Snapshot, folder: str) -> Iterator[str]:
    """Relative paths of the regular files under ``folder`` (absent: none); links and others are left out."""
    root = snap.node_dir / folder
    if not root.is_dir() or root.is_symlink():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            rel = path.relative_to(snap.node_dir).as_posix()
            if path.is_symlink() or not path.is_file():
                snap.left_out.append(LeftOut(rel, "not a regular file (a symbolic link is never followed)"))
            else:
                yield rel


def _add_parents(snap: Snapshot, rel: str) -> None:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        folder = "/".join(parts[:i])
        if folder not in snap.directories:
            snap.directories[folder] = stat.S_IMODE(os.stat(snap.node_dir / folder).st_mode)


def _note_rounds_in_flight(snap: Snapshot) -> None:
    """A round's manifest is kept before its contribution is anchored, its cohort after: one without the other is a
    round under way (or one whose anchoring failed)."""
    staged = {f.path for f in snap.staged}
    for rel in sorted(staged):
        path = Path(rel)
        if rel.startswith(f"{COHORTS_DIR}/") and path.name.startswith("manifest-") and path.suffix == ".json":
            round_ = path.stem.removeprefix("manifest-")
            if (path.parent / f"round-{round_}.json").as_posix() not in staged:
                snap.notes.append(f"{rel}: round {round_} of {path.parent.name} has no kept cohort yet (it was being "
                                  "anchored, or its anchoring failed); back up again once the round is over")


def _check_store(snap: Snapshot, records: list[tuple[str, str, int]], progress: Progress | None) -> None:
    """Check each record's file against its id; the good ones go into the backup, the others are reported."""
    total, done = sum(size for _, _, size in records), 0
    named = set()
    for record_id, rel, size in records:
        named.add(rel)
        try:
            if not rel.startswith(f"{STORE_DIR}/"):
                raise BackupError("the catalog places it outside store/")
            check_relative(rel)
            mode = os.lstat(snap.node_dir / rel).st_mode
            got_size, digest = hash_file(snap.node_dir / rel)
        except (BackupError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            snap.left_out.append(LeftOut(rel, f"record {record_id} cannot be read ({reason}); run `metai-node verify`"))
            continue
        finally:
            done += size
            if progress is not None:
                progress("checking the store", done, total)
        if digest != record_id:
            snap.left_out.append(LeftOut(rel, f"damaged: its SHA-256 is {digest}, not its record id {record_id}; "
                                              "run `metai-node verify`"))
            continue
        _add_parents(snap, rel)
        snap.store.append(BackupFile(rel, got_size, stat.S_IMODE(mode), digest))
    unnamed = sum(1 for rel in _store_files(snap.node_dir) if rel not in named)
    if unnamed:
        snap.left_out.append(LeftOut(f"{STORE_DIR}/", f"{unnamed} files no committed catalog record names (an ingest "
                                                      "under way, or what a killed one left for its recovery)"))


def _store_files(node_dir: Path) -> Iterator[str]:
    for dirpath, _, filenames in os.walk(node_dir / STORE_DIR):
        for name in filenames:
            yield (Path(dirpath) / name).relative_to(node_dir).as_posix()


def _left_out_entries(snap: Snapshot, kept: set[str]) -> None:
    """Name every other entry of the node directory, with the reason it is not in the backup."""
    for entry in sorted(os.scandir(snap.node_dir), key=lambda e: e.name):
        if entry.name in kept:
            continue
        shown = entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
        snap.left_out.append(LeftOut(shown, LEFT_OUT.get(entry.name, _UNKNOWN)))
