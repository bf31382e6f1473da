"""Review 2 of issue 9: a sinogram's data can come from a file outside the folder given to ingest.

Raw de-identification refuses external links ("a link to another file, which the node never
follows", ``node.raw_deid.h5.local_object``), and discovery does not follow symbolic links out of
the given roots. HDF5 has two more ways to keep a dataset's values in another file: external raw
storage (``H5Pset_external``: the values are read from a flat file named in the dataset's creation
properties) and virtual datasets (``H5Pset_virtual``: the values are mapped from datasets of other
HDF5 files). Both open files by the absolute path the source names; the node reads them through
h5py and stores what they hold. Here the other file holds another record's bytes (a marker); the
given file holds none of them, and after ingest the store does.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from node.ingest import Ingestor
from tests.node.ingest_corpus import write_sinogram
from tests.node.leakscan import describe, scan_tree

MARKER = b"MRKZQXOUTSIDE-01"  # 16 bytes: four finite float32 values


def _outside_values(shape: tuple[int, ...]) -> bytes:
    count = int(np.prod(shape)) * 4
    return (MARKER * (count // len(MARKER) + 1))[:count]


def _external_storage(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        shape, attrs = f["sinogram"].shape, dict(f["sinogram"].attrs)
        raw = _outside_values(shape)
        (outside / "other-record.bin").write_bytes(raw)
        del f["sinogram"]
        dset = f.create_dataset("sinogram", shape=shape, dtype="<f4",
                                external=[(str(outside / "other-record.bin"), 0, len(raw))])
        dset.attrs.update(attrs)


def _virtual_dataset(path: Path, outside: Path) -> None:
    with h5py.File(path, "r+") as f:
        shape, attrs = f["sinogram"].shape, dict(f["sinogram"].attrs)
        with h5py.File(outside / "other-record.h5", "w") as other:
            other.create_dataset("values", data=np.frombuffer(_outside_values(shape), "<f4").reshape(shape))
        del f["sinogram"]
        layout = h5py.VirtualLayout(shape=shape, dtype="<f4")
        layout[:] = h5py.VirtualSource(str(outside / "other-record.h5"), "values", shape=shape)
        dset = f.create_virtual_dataset("sinogram", layout)
        dset.attrs.update(attrs)


CASES = {"external raw storage": _external_storage, "virtual dataset": _virtual_dataset}


@pytest.mark.parametrize("case", sorted(CASES))
def test_values_held_in_a_file_outside_the_given_folder_are_not_ingested(
    case: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    folder, outside = tmp_path / "in", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    path = folder / "ct.h5"
    write_sinogram(path, "REVIEW2-EXT-1")
    CASES[case](path, outside)
    assert MARKER not in path.read_bytes()
    node = make_node(role=False)
    Ingestor(node).run([folder])
    hits = scan_tree(node.dir, [MARKER.decode()])
    assert hits == [], f"{case}: bytes of a file outside {folder} were stored:\n{describe(hits)}"
