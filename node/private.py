"""Private files of a node: directories 0700, files 0600, whatever the umask; atomic writes.

A node directory holds the hospital key, the catalog, de-identified records and (in the
quarantine) untouched originals with every identifier in them, so nothing in it may be
readable by other users of the host. Every writer of the node creates its files through
these helpers, opening a node tightens what an older version left behind, and the process
umask is set to 077 (as ssh and gpg do) so that files written by the libraries the node
calls (SQLite's WAL and shared-memory files, HDF5, cohort files) are private as well.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
#: Prefix of the temporary files made by :func:`write_atomic`; removed by the ingest recovery.
TMP_PREFIX = ".tmp-"
_LOOSE = 0o077  # any permission for group or others


def private_umask() -> None:
    """Make every file this process creates from now on private to its user (umask 077)."""
    os.umask(0o077)


def make_dir(path: Path) -> Path:
    """Create ``path`` and missing parents with mode 0700 (and tighten it if it exists); return it."""
    missing = []
    for parent in (path, *path.parents):
        if parent.is_dir():
            break
        missing.append(parent)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, DIR_MODE)
    for folder in (path, *missing):
        _tighten_one(folder, DIR_MODE)
    return path


def create_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if it does not exist; tighten it if it does."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write ``data`` to ``path`` (mode 0600) so that it appears complete or not at all.

    The bytes go to a temporary file in the same folder, which is then renamed. A kill in
    between leaves a ``.tmp-`` file that the next ingest's recovery removes.

    Parameters:
        path: the destination; its folder must exist.
        data: the content.
        replace: with False an existing ``path`` is kept (content-addressed files never change).

    Returns:
        True if ``path`` was written, False if it existed and ``replace`` is False.
    """
    if not replace and path.exists():
        return False
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TMP_PREFIX)  # mkstemp creates mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def tighten(node_dir: Path, *, always: tuple[str, ...] = ()) -> None:
    """Make ``node_dir`` 0700 and what it holds 0700 (folders) / 0600 (files).

    A folder that is already private is not walked (opening a node must stay cheap with a
    large store); its direct entries are checked, and so is every folder named in ``always``
    (e.g. the quarantine, which holds identifying originals).
    """
    for entry in _entries(node_dir):
        if entry.is_dir(follow_symlinks=False):
            try:
                loose = entry.stat(follow_symlinks=False).st_mode & _LOOSE
            except FileNotFoundError:
                continue
            if loose or entry.name in always:
                _walk(Path(entry.path))
            _tighten_one(Path(entry.path), DIR_MODE)
        elif entry.is_file(follow_symlinks=False):
            _tighten_one(Path(entry.path), FILE_MODE)
    _tighten_one(node_dir, DIR_MODE)


def _walk(folder: Path) -> None:
    for entry in _entries(folder):
        if entry.is_dir(follow_symlinks=False):
            _walk(Path(entry.path))
            _tighten_one(Path(entry.path), DIR_MODE)
        elif entry.is_file(follow_symlinks=False):
            _tighten_one(Path(entry.path), FILE_MODE)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []


def _tighten_one(path: Path, mode: int) -> None:
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            return  # a link's own mode means nothing; its target is not the node's to change
        if stat.S_IMODE(st.st_mode) & ~mode & 0o7777:
            os.chmod(path, stat.S_IMODE(st.st_mode) & mode)
    except FileNotFoundError:
        pass  # removed meanwhile (a running ingest's temporary file): nothing left to protect
