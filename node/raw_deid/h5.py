"""Reading HDF5 sources without ever leaving them.

A file can reach outside itself in three ways, and the node follows none of them: an external
link (a link to an object of another file), external raw storage (a dataset whose values are read
from flat files the dataset names) and a virtual dataset (values mapped from datasets of other HDF5
files). The library opens those other files by the paths the source names, so following them would
copy a file the node was never given (another patient's record) into the store.
"""

from __future__ import annotations

from typing import Any

import h5py

from node.errors import DeidentificationError

__all__ = ["local_object", "local_values"]


def local_object(root: h5py.Group, path: str) -> Any:
    """Return the object at ``path`` under ``root``, or None if it is absent or reached through another file.

    Soft links inside the file are followed (their target is in the same file and is read under the
    same allow-list); an external link on the way is refused, since it would open a file the node
    was never given, and a dangling link counts as absent. A dataset is returned even if its values
    are stored in other files: read it with :func:`local_values`, which refuses those.
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


def local_values(dset: h5py.Dataset, where: str, selection: Any = ()) -> Any:
    """Return ``dset[selection]``, refusing a dataset whose values are stored outside the file.

    The check reads only the dataset's creation properties (layout and external file list), so no
    byte of another file is read before the refusal.

    Parameters:
        dset: a dataset of the source file.
        where: the field's name for the message (the allow-list path, never a name from the file).
        selection: what to read; everything by default.

    Raises:
        DeidentificationError: the dataset is virtual or uses external raw storage.
    """
    plist = dset.id.get_create_plist()
    external = int(plist.get_external_count())
    if plist.get_layout() == h5py.h5d.VIRTUAL or external:
        how = ("a virtual dataset, mapped from datasets of other HDF5 files" if external == 0
               else f"HDF5 external raw storage in {external} other file(s)")
        # The other files' names stay out of the message: they are the source's content.
        raise DeidentificationError(
            f"{where} stores its data outside the file ({how}), which the node never reads; "
            "write the values into the file itself and ingest it again"
        )
    return dset[selection]
