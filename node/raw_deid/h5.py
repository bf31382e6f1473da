"""Reading HDF5 sources without ever leaving them: links to other files are not followed."""

from __future__ import annotations

from typing import Any

import h5py

__all__ = ["local_object"]


def local_object(root: h5py.Group, path: str) -> Any:
    """Return the object at ``path`` under ``root``, or None if it is absent or reached through another file.

    Soft links inside the file are followed (their target is in the same file and is read under the
    same allow-list); an external link on the way is refused, since it would open a file the node
    was never given, and a dangling link counts as absent.
    """
    parts = [p for p in path.split("/") if p]
    node: Any = root
    for part in parts:
        if not isinstance(node, h5py.Group):
            return None
        link = node.get(part, getlink=True)
        if link is None or isinstance(link, h5py.ExternalLink):
            return None
        try:
            node = node.get(part)
        except (KeyError, OSError):  # a link h5py cannot resolve
            return None
        if node is None:
            return None
    return node
