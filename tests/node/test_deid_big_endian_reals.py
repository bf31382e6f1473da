"""Floating-point values in a big-endian file are judged as the numbers they encode, not byte-swapped.

The de-identification removes FL/FD values outside any physical range (text spelled as numbers).
Explicit VR Big Endian (retired, but still read) stores the same numbers with their bytes reversed:
a measured 1000 s/mm^2 b-value read with the wrong byte order is a subnormal near 1e-310 and would
be removed as if it were text. The file is written here from scratch in big-endian order, so the
bytes the de-identification sees are the ones a big-endian scanner writes.
"""

from __future__ import annotations

import struct

import pydicom
import pytest

from node.deid import PatientContext, UidMapper, deidentify
from tests.node.fd_written import fd_written

B_VALUE = 0x00189087  # Diffusion b-value, FD, VM 1 (not in the profile table: kept)
ORIENTATION = 0x00189089  # Diffusion Gradient Orientation, FD, VM 3 (kept)


def _big_endian(values: dict[int, object]) -> pydicom.Dataset:
    return fd_written(values, uid="1.2.999.999.7.1", patient_id="MARK-0007-ZQX", little_endian=False)


def test_big_endian_measurements_are_kept_with_their_values() -> None:
    read = _big_endian({B_VALUE: 1000.0, ORIENTATION: [0.0, 0.6, 0.8]})
    # The premise: these bytes, taken as little-endian, are far outside the physical window.
    raw = read.get_item(B_VALUE).value
    assert raw == struct.pack(">d", 1000.0)
    assert abs(struct.unpack("<d", raw)[0]) < 1e-300

    result = deidentify(read, PatientContext("MTP-BE0001", -30), UidMapper(b"s" * 32))
    assert result.dataset[B_VALUE].value == 1000.0
    assert list(result.dataset[ORIENTATION].value) == pytest.approx([0.0, 0.6, 0.8])
    assert not [f for f in result.flags if "physical range" in f]


def test_big_endian_text_spelled_as_a_real_is_removed() -> None:
    marker = b"MARK0007"  # 8 bytes: one FD value, about 1e64 in either byte order
    assert abs(struct.unpack(">d", marker)[0]) > 1e9
    ds = _big_endian({B_VALUE: 1.0})
    ds[B_VALUE] = pydicom.dataelem.RawDataElement(
        pydicom.tag.Tag(B_VALUE), "FD", len(marker), marker, 0, False, False
    )
    result = deidentify(ds, PatientContext("MTP-BE0002", -30), UidMapper(b"s" * 32))
    assert B_VALUE not in result.dataset
    assert [f for f in result.flags if "(0018,9087)" in f and "physical range" in f]
