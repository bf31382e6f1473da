"""The quarantine: untouched copies of files that could not be ingested, each with its reason.

A copy is named by the sha256 of its bytes (plus the source's extension when it is a short
plain one), never by the source's name, so any source name fits and two sources with the
same bytes share one copy. ``<name>.reason.txt`` next to it says where it came from and why;
the catalog's quarantine rows say the same for every source. The copies hold every identifier
the source held: the folder is 0700 and the files 0600 like the whole node.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import tempfile
from pathlib import Path

from node.private import TMP_PREFIX, make_dir, write_atomic

QUARANTINE_DIR = "quarantine"
REASON_SUFFIX = ".reason.txt"
_PLAIN_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")


class NotRegularFileError(OSError):
    """The path is not (or no longer) a regular file: never read (a FIFO would block)."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a regular file")
        self.kind = kind


def copy_name(source_sha256: str, source: Path) -> str:
    """The quarantine file name of a source with these bytes."""
    suffix = source.suffix if _PLAIN_SUFFIX.fullmatch(source.suffix) else ""
    return f"{source_sha256}{suffix}"


def reason_file(copy: Path) -> Path:
    """The reason file that goes with the quarantined ``copy``."""
    return copy.with_name(copy.name + REASON_SUFFIX)


def keep(node_dir: Path, source: Path, content: bytes, source_sha256: str, reason: str) -> str:
    """Put a copy of ``content`` (read from ``source``) and its reason into the quarantine.

    Returns:
        The copy's path relative to ``node_dir``.
    """
    folder = node_dir / QUARANTINE_DIR
    if not folder.is_dir():
        make_dir(folder)
    copy = folder / copy_name(source_sha256, source)
    write_atomic(copy, content, replace=False)
    _write_reason(copy, source, source_sha256, reason)
    return copy.relative_to(node_dir).as_posix()


def keep_from_source(node_dir: Path, source: Path, reason: str) -> tuple[str, str, FileIdentity]:
    """Copy the file at ``source`` into the quarantine, hashing it on the way.

    For files whose bytes are not at hand (the process reading them died).

    Returns:
        (sha256 of the copied bytes, the copy's path relative to ``node_dir``, the identity of
        the file read).

    Raises:
        OSError: the source cannot be opened or read; NotRegularFileError: it is not a regular file.
    """
    folder = node_dir / QUARANTINE_DIR
    if not folder.is_dir():
        make_dir(folder)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as out, open_regular(source) as src:
            identity = file_identity(src)
            while block := src.read(1 << 20):
                digest.update(block)
                out.write(block)
        copy = folder / copy_name(digest.hexdigest(), source)
        os.replace(tmp, copy)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _write_reason(copy, source, digest.hexdigest(), reason)
    return digest.hexdigest(), copy.relative_to(node_dir).as_posix(), identity


#: (device, inode, size, modification time in ns) of a file as it was read.
FileIdentity = tuple[int, int, int, int]


def file_identity(fh: io.FileIO) -> FileIdentity:
    """The identity of the open file ``fh``."""
    st = os.fstat(fh.fileno())
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def remove_if_unchanged(path: Path, identity: FileIdentity) -> str | None:
    """Remove the source at ``path`` if it is still the file that was read; else say why not.

    A quarantined source is removed only after its catalog row is committed, a moment after it
    was read: a file written over it meanwhile is another file, and stays.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None  # the same file reached twice in this run, or removed by someone else
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != identity:
        return "copied to the quarantine but not removed: it changed after it was read"
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"copied to the quarantine but not removed: {exc.strerror}"
    return None


def open_regular(path: Path) -> io.FileIO:
    """Open ``path`` for reading only if it is a regular file, without following a final symlink.

    ``O_NONBLOCK`` keeps a FIFO swapped in after discovery from blocking the open; the
    ``fstat`` check then refuses it before anything is read.

    Raises:
        NotRegularFileError: a FIFO, socket, device or folder; OSError: cannot open (a symlink
        gives ELOOP).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, file_kind(mode))
        return io.FileIO(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode: int) -> str:
    """What a ``st_mode`` describes, in words ("a FIFO", "a socket", ...)."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISLNK, "a symbolic link"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "an unknown kind of file"


def _write_reason(copy: Path, source: Path, source_sha256: str, reason: str) -> None:
    text = f"source: {source}\nsha256: {source_sha256}\nreason: {reason}\n"
    write_atomic(reason_file(copy), text.encode("utf-8", "surrogateescape"))
