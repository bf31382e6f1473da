"""Which files an ingest takes from the paths it is given, and why it leaves any other entry.

The policy (docs/node.md, "What is ingested"):

- A path given on the command line is followed even if it is a symbolic link: the operator
  named it. Folders are walked recursively in name order.
- Inside a folder, symbolic links are never followed. Each is reported: a link whose target
  lies inside the given paths (that target is ingested on its own), a link pointing outside
  them, a broken link, or a loop.
- Hidden files and folders (names starting with ".") are ingested like any other.
- FIFOs, sockets and devices are reported and never opened (opening a FIFO blocks).
- A folder that cannot be listed is reported; so is a given path that does not exist.
- The node's own directory is not walked into from outside (it is reported once if it lies
  inside a given folder); a folder inside it can be given explicitly (the PACS inbox), but its
  store, quarantine and temporary folders are never ingested from.

Nothing is skipped without an entry in the ingest summary: every entry not taken is returned
with its reason.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.quarantine import file_kind


@dataclass
class Discovery:
    """The files to ingest as (path, name relative to its root, size in bytes), and the entries left with a reason."""

    files: list[tuple[Path, str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def discover(paths: Sequence[Path], skip: Iterable[Path] = (), exclude: Iterable[Path] = (),
             protect: Iterable[Path] = ()) -> Discovery:
    """Expand files and folders into the regular files to ingest.

    Parameters:
        paths: files and folders given by the operator.
        skip: files used otherwise by this run (a label sidecar), left out without a report.
        exclude: folders not walked into from outside (the node directory), reported when met.
        protect: folders never ingested from, even when given (the node's store and quarantine).
    """
    walk = _Walk({os.path.realpath(p) for p in skip}, [os.path.realpath(p) for p in exclude],
                 [os.path.realpath(p) for p in protect], [os.path.realpath(p) for p in paths])
    for root in paths:
        walk.root(Path(root))
    return walk.found


class _Walk:
    def __init__(self, skip: set[str], exclude: list[str], protect: list[str], roots: list[str]) -> None:
        self.skip = skip
        self.exclude = exclude
        self.protect = protect
        self.roots = roots
        self.root_real = ""
        self.seen: set[str] = set()
        self.found = Discovery()

    def root(self, root: Path) -> None:
        try:
            st = os.stat(root)  # a given path is followed
        except OSError as exc:
            self.found.skipped.append((str(root), _os_reason("cannot be read", exc)))
            return
        real = self.root_real = os.path.realpath(root)
        if self._excluded(real):
            self.found.skipped.append((str(root), _NODE_REASON))
        elif stat.S_ISDIR(st.st_mode):
            self.folder(root, real, "")
        elif stat.S_ISREG(st.st_mode):
            self.file(root, real, root.name, st.st_size)
        else:
            self.found.skipped.append((str(root), f"{file_kind(st.st_mode)}, not a regular file: never opened"))

    def folder(self, folder: Path, real: str, prefix: str) -> None:
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.found.skipped.append((str(folder), _os_reason("folder cannot be listed", exc)))
            return
        for entry in entries:
            path = Path(entry.path)
            name = f"{prefix}{entry.name}"
            entry_real = os.path.join(real, entry.name)  # real, since links below are never followed
            try:
                st = entry.stat(follow_symlinks=False)
                mode = st.st_mode
            except OSError as exc:
                self.found.skipped.append((str(path), _os_reason("cannot be examined", exc)))
                continue
            if stat.S_ISLNK(mode):
                self.found.skipped.append((str(path), self._link_reason(path)))
            elif stat.S_ISDIR(mode):
                if self._excluded(entry_real):
                    self.found.skipped.append((str(path), _NODE_REASON))
                else:
                    self.folder(path, entry_real, f"{name}/")
            elif stat.S_ISREG(mode):
                self.file(path, entry_real, name, st.st_size)
            else:
                self.found.skipped.append((str(path), f"{file_kind(mode)}, not a regular file: never opened"))

    def file(self, path: Path, real: str, name: str, size: int) -> None:
        if real in self.skip or real in self.seen:
            return  # the sidecar of this run, or the same file reached through overlapping paths
        self.seen.add(real)
        self.found.files.append((path, name, size))

    def _link_reason(self, link: Path) -> str:
        try:
            target = os.path.realpath(link, strict=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop: not followed"
            if exc.errno == errno.ENOENT:
                return "broken symbolic link (its target does not exist): not followed"
            return _os_reason("symbolic link that cannot be resolved", exc)
        if any(_inside(target, root) for root in self.roots):
            return "symbolic link to a path inside the given folders: not followed (the target is ingested itself)"
        return "symbolic link to a path outside the given folders: not followed"

    def _excluded(self, real: str) -> bool:
        if any(_inside(real, folder) for folder in self.protect):
            return True
        # Walked into from outside: excluded; given explicitly (or walked from such a root): not.
        return any(_inside(real, folder) and not _inside(self.root_real, folder) for folder in self.exclude)


_NODE_REASON = "the node's own directory (or its store, quarantine or temporary files): never ingested from"


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _os_reason(what: str, exc: OSError) -> str:
    return f"{what}: {exc.strerror or type(exc).__name__}"
