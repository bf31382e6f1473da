"""A raw file's data can come from a file outside the folder given to ingest.

Raw de-identification refuses external links ("a link to another file, which the node never
follows", ``node.raw_deid.h5.local_object``), and discovery does not follow symbolic links out of
the given roots. HDF5 has two more ways to keep a dataset's values in another file: external raw
storage (``H5Pset_external``: the values are read from a flat file named in the dataset's creation
properties) and virtual datasets (``H5Pset_virtual``: the values are mapped from datasets of other
HDF5 files). Both open files by the absolute path the source names; the node used to read them
through h5py and store what they hold. Here the other file holds another record's bytes (a marker);
the given file holds none of them, and after ingest the store must not either.

Beyond the ingest, each dataset the readers (``raw_data``) or the rebuild (``node.raw_deid``) read
is moved outside the file in both ways, and each must refuse it without naming the other file.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.ingest import Ingestor
from node.raw_deid import deidentify_raw
from raw_data import CorruptFileError, read_ismrmrd, read_sinogram
from tests.node.ingest_corpus import write_kspace, write_sinogram
from tests.node.leakscan import describe, scan_tree

MARKER = b"MRKZQXOUTSIDE-01"  # 16 bytes: four finite float32 values
OTHER = "MRKZQX-OTHER-RECORD"  # the other files' names: never in a message
PATIENT = PatientContext("MTP-0123456789", -40)
UIDS = UidMapper(b"k" * 32)


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


# ---------------------------------------------------------------- every dataset, both ways


def _move_outside(path: Path, name: str, outside: Path, how: str) -> None:
    """Rewrite dataset ``name`` of ``path`` so that its values are held by a file in ``outside``.

    The values are the dataset's own (so the file stays valid in every other respect): only
    where they are stored changes.
    """
    with h5py.File(path, "r+") as f:
        values, dtype, attrs = f[name][()], f[name].dtype, dict(f[name].attrs)
        del f[name]
        if how == "external raw storage":
            target = outside / f"{OTHER}.bin"
            target.touch()  # HDF5 writes the values into the flat file the dataset names
            dset = f.create_dataset(name, shape=values.shape, dtype=dtype,
                                    external=[(str(target), 0, h5py.h5f.UNLIMITED)])
            dset[...] = values
        else:
            target = outside / f"{OTHER}.h5"
            with h5py.File(target, "w") as other:
                other.create_dataset("values", data=values, dtype=dtype)
            layout = h5py.VirtualLayout(shape=values.shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(target), "values", shape=values.shape, dtype=dtype)
            dset = f.create_virtual_dataset(name, layout)
        dset.attrs.update(attrs)
        layout_kind = dset.id.get_create_plist().get_layout()
    # The planted storage is the one meant: a virtual layout, or an external file list.
    assert (layout_kind == h5py.h5d.VIRTUAL) == (how == "virtual dataset")


def _sinogram(path: Path) -> None:
    write_sinogram(path, "REVIEW2-EXT-2")


def _kspace(path: Path) -> None:
    write_kspace(path, "REVIEW2-EXT-3")


def _shepp_logan(path: Path) -> None:
    # The reference tool writes coil_images, which the project's own writer does not.
    subprocess.run(["ismrmrd_generate_cartesian_shepp_logan", "-m", "16", "-c", "2", "-o", str(path)],
                   check=True, capture_output=True, cwd=path.parent)


DATASETS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    # dataset -> (format, writer, allow-list path named in the node's refusal)
    "/sinogram": ("metai-ct-sinogram", _sinogram, "/sinogram"),
    "/geometry/angles_rad": ("metai-ct-sinogram", _sinogram, "/geometry/angles_rad"),
    "/dataset/data": ("ismrmrd", _kspace, "/dataset/data"),
    "/dataset/xml": ("ismrmrd", _kspace, "/dataset/xml"),
    "/dataset/csm": ("ismrmrd", _kspace, "/dataset/csm"),
    "/dataset/phantom": ("ismrmrd", _kspace, "/dataset/phantom"),
    "/dataset/coil_images": ("ismrmrd", _shepp_logan, "/dataset/coil_images"),
}
# raw_data's ISMRMRD reader does not read coil_images: only the node's rebuild does.
READ_BY_RAW_DATA = [name for name in DATASETS if name != "/dataset/coil_images"]
HOWS = sorted(CASES)


def _planted(tmp_path: Path, name: str, how: str) -> Path:
    write = DATASETS[name][1]
    if write is _shepp_logan and shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None:
        pytest.skip("ismrmrd-tools is not installed (deploy/install-system-deps.sh installs it)")
    folder, outside = tmp_path / "in", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    path = folder / "raw.h5"
    write(path)
    _move_outside(path, name, outside, how)
    return path


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("name", READ_BY_RAW_DATA)
def test_the_raw_data_readers_refuse_a_dataset_stored_outside_the_file(name: str, how: str, tmp_path: Path) -> None:
    path = _planted(tmp_path, name, how)
    read = read_sinogram if DATASETS[name][0] == "metai-ct-sinogram" else read_ismrmrd
    with pytest.raises(CorruptFileError, match=f"dataset {name} stores its data outside the file") as caught:
        read(path)
    assert OTHER not in str(caught.value)
    assert ("virtual dataset" in str(caught.value)) == (how == "virtual dataset")


@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_the_raw_rebuild_refuses_a_dataset_stored_outside_the_file(name: str, how: str, tmp_path: Path) -> None:
    path = _planted(tmp_path, name, how)
    fmt, _, field = DATASETS[name]
    with pytest.raises(DeidentificationError, match=f"{field} stores its data outside the file") as caught:
        deidentify_raw(fmt, path, PATIENT, UIDS)
    assert OTHER not in str(caught.value)


@pytest.mark.parametrize("name", ["/sinogram", "/dataset/coil_images"])
def test_the_same_files_with_their_data_inside_are_rebuilt(name: str, tmp_path: Path) -> None:
    # The refusals above come from where the values are stored, not from the writers' files.
    fmt, write, _ = DATASETS[name]
    if write is _shepp_logan and shutil.which("ismrmrd_generate_cartesian_shepp_logan") is None:
        pytest.skip("ismrmrd-tools is not installed (deploy/install-system-deps.sh installs it)")
    path = tmp_path / "raw.h5"
    write(path)
    stored = tmp_path / "stored.h5"
    stored.write_bytes(deidentify_raw(fmt, path, PATIENT, UIDS).content)
    with h5py.File(stored, "r") as f, h5py.File(path, "r") as src:
        assert np.array_equal(f[name][()], src[name][()])
