"""What a reader can decode from a file is compared with a failure's message, whatever the file's filters.

``node.redact_view.decoded_view`` must hold every planted text that a library could echo: values
behind HDF5's deflate, shuffle and LZF filters, in attributes and names, and the data set of a
deflated DICOM file. Each marker is checked absent from the raw bytes first, so the test shows
the view adds it.
"""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import DeflatedExplicitVRLittleEndian

from node.redact import value_free
from node.redact_view import decoded_view


@pytest.mark.parametrize(
    "filters",
    [{"compression": "gzip"}, {"compression": "gzip", "shuffle": True}, {"compression": "lzf"}],
    ids=["deflate", "shuffle+deflate", "lzf"],
)
def test_text_behind_an_hdf5_filter_is_in_the_view(filters: dict[str, object], tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    texts = np.array([b"MRKFILTERONE", b"MRKFILTERTWO", b"MRKFILTERTHREE"], dtype="S16")
    with h5py.File(path, "w") as f:
        f.create_dataset("notes", data=texts, chunks=(3,), **filters)
    content = path.read_bytes()
    assert b"MRKFILTERTWO" not in content
    view = decoded_view(content, path)
    for marker in (b"MRKFILTERONE", b"MRKFILTERTWO", b"MRKFILTERTHREE"):
        assert marker in view
    assert value_free("Unknown property MRKFILTERTWO here", view) == "Unknown property <value> here"


def test_names_attributes_and_compound_text_fields_are_in_the_view(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    record = np.array([(1.5, b"MRKCOMPOUND")], dtype=[("x", "<f4"), ("note", "S12")])
    with h5py.File(path, "w") as f:
        group = f.create_group("MRKGROUPNAME")
        group.attrs["MRKATTRNAME"] = "MRKATTRVALUE"
        group.create_dataset("records", data=record, chunks=(1,), compression="gzip")
    view = decoded_view(path.read_bytes(), path)
    for marker in (b"MRKGROUPNAME", b"MRKATTRNAME", b"MRKATTRVALUE", b"MRKCOMPOUND"):
        assert marker in view


def test_the_data_set_of_a_deflated_dicom_file_is_in_the_view() -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.InstitutionName = "MRKDEFLATEDINST"
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    content = buffer.getvalue()
    assert b"MRKDEFLATEDINST" not in content
    assert b"MRKDEFLATEDINST" in decoded_view(content)


def test_a_file_that_is_not_hdf5_or_is_damaged_gives_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    assert decoded_view(path.read_bytes(), path).startswith(b"\x89HDF\r\n\x1a\n")
    assert decoded_view(b"plain words") == b"plain words"
