"""Binary numbers of kept DICOM attributes carry text into the store bit for bit.

An attribute of VR US, FD and the like is kept without being looked at (``_kept_unread``), so its
bytes are written back as they were read, whatever their number or meaning:

- Smallest Image Pixel Value (0028,0106) is one US value (VM 1); sixteen bytes make eight;
- Diffusion Gradient Orientation (0018,9089) is a unit vector of three FD values (VM 3); 24 bytes of
  text make three finite doubles of the right count, none near length 1.

The same class as the ISMRMRD acquisition numbers (``test_ismrmrd_kept_numbers_carry_text.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement

from node.ingest import Ingestor
from tests.node.leakscan import describe, scan_tree

CASES = {
    "SmallestImagePixelValue (0028,0106) US, eight values where VM is 1": (0x00280106, "US", "<u2",
                                                                          "MRKZQX-USTEXT-01"),
    "DiffusionGradientOrientation (0018,9089) FD, VM 3": (0x00189089, "FD", "<f8", "MRKZQX-FDTEXT-0212345678"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_packed_into_a_kept_number_does_not_reach_the_store(
    name: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    tag, vr, dtype, marker = CASES[name]
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW2-NUM-1"
    ds.add(DataElement(tag, vr, np.frombuffer(marker.encode(), dtype).tolist()))
    folder = tmp_path / "in"
    folder.mkdir()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert marker.encode() in buffer.getvalue()
    (folder / "image.dcm").write_bytes(buffer.getvalue())
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert (report.quarantined, len(report.ingested)) == ([], 1)
    hits = scan_tree(node.dir, [marker])
    assert hits == [], f"{name} kept {marker!r}:\n{describe(hits)}"


# ---------------------------------------------------------------- value multiplicity, as PS3.5 6.4 defines it
# (VM "n": exactly n values; "a-b": a to b; "a-n": a or more; "a-an": a positive multiple of a)

US_VM = {  # tag, keyword, its VM in PS3.6
    0x00280106: ("SmallestImagePixelValue", "1"),
    0x00189066: ("NumberOfZeroFills", "1-2"),
    0x00286102: ("ApplicableFrameRange", "2-2n"),
    0x00800007: ("SurfacePointColorCIELabValueData", "3-3n"),
    0x00720212: ("DisplaySetScrollingGroup", "2-n"),
    0x00080304: ("NonidentifyingPrivateElements", "1-n"),
}
# (keyword, number of US values written, kept?)
COUNTS = [
    ("SmallestImagePixelValue", 1, True), ("SmallestImagePixelValue", 2, False),
    ("NumberOfZeroFills", 1, True), ("NumberOfZeroFills", 2, True), ("NumberOfZeroFills", 3, False),
    ("ApplicableFrameRange", 2, True), ("ApplicableFrameRange", 4, True), ("ApplicableFrameRange", 3, False),
    ("ApplicableFrameRange", 1, False), ("ApplicableFrameRange", 5, False),
    ("SurfacePointColorCIELabValueData", 3, True), ("SurfacePointColorCIELabValueData", 9, True),
    ("SurfacePointColorCIELabValueData", 4, False), ("SurfacePointColorCIELabValueData", 7, False),
    ("DisplaySetScrollingGroup", 2, True), ("DisplaySetScrollingGroup", 7, True),
    ("DisplaySetScrollingGroup", 1, False),
    ("NonidentifyingPrivateElements", 1, True), ("NonidentifyingPrivateElements", 12, True),
]


def _written_and_read(tag: int, value: bytes) -> pydicom.Dataset:
    """A minimal CT data set holding ``value`` as the bytes of ``tag``, written without VRs and read back."""
    from tests.node.minimal_ct import implicit_vr_file

    return implicit_vr_file(9, DataElement(tag, "OB", value))  # only the bytes reach the file


def _deid(ds: pydicom.Dataset):  # type: ignore[no-untyped-def]
    from node.deid import PatientContext, UidMapper, deidentify

    return deidentify(ds, PatientContext("MTP-TEST000009", 17), UidMapper(b"test-secret-not-for-production-0009"))


@pytest.mark.parametrize(("keyword", "count", "kept"), COUNTS, ids=[f"{k} x{n}" for k, n, _ in COUNTS])
def test_a_kept_number_with_a_count_its_vm_does_not_allow_is_removed_and_flagged(
        keyword: str, count: int, kept: bool) -> None:
    tag = next(t for t, (k, _) in US_VM.items() if k == keyword)
    vm = US_VM[tag][1]
    value = np.arange(1, count + 1, dtype="<u2").tobytes()
    result = _deid(_written_and_read(tag, value))
    refusal = f"{keyword} {pydicom.tag.Tag(tag)}: {count} values where the standard allows {vm}; removed"
    if kept:
        assert result.dataset[tag].value == (list(range(1, count + 1)) if count > 1 else 1)
        assert refusal not in result.flags
    else:
        assert tag not in result.dataset
        assert refusal in result.flags


def test_an_empty_number_is_kept_and_a_part_of_a_value_is_removed() -> None:
    empty = _deid(_written_and_read(0x00280106, b""))
    assert empty.dataset[0x00280106].value in (None, b"", [])
    assert not any("SmallestImagePixelValue" in f for f in empty.flags)
    # DiffusionGradientOrientation (0018,9089), FD, VM 3: twelve bytes are one and a half values.
    odd = _deid(_written_and_read(0x00189089, np.array([0.5, 0.25], dtype="<f8").tobytes()[:12]))
    assert 0x00189089 not in odd.dataset
    assert "DiffusionGradientOrientation (0018,9089): 1.50 values where the standard allows 3; removed" in odd.flags


def test_one_value_where_three_are_due_is_removed() -> None:
    # DiffusionGradientOrientation (0018,9089) is a unit vector, FD, VM 3.
    result = _deid(_written_and_read(0x00189089, np.array([0.5], dtype="<f8").tobytes()))
    assert 0x00189089 not in result.dataset
    assert "DiffusionGradientOrientation (0018,9089): 1 values where the standard allows 3; removed" in result.flags


def test_an_attribute_the_dictionary_gives_no_keyword_is_named_by_its_tag() -> None:
    # (300A,0782) is in the DICOM dictionary as US, VM 1, with no keyword.
    result = _deid(_written_and_read(0x300A0782, np.array([1, 2], dtype="<u2").tobytes()))
    assert 0x300A0782 not in result.dataset
    assert "attribute (300A,0782): 2 values where the standard allows 1; removed" in result.flags


def test_text_packed_into_a_pixel_value_of_an_implicit_vr_file_does_not_survive() -> None:
    # (0028,0106) is "US or SS" in the dictionary; read from an implicit-VR file it has no VR of its own.
    marker = b"MRKZQX-USTEXT-02"
    result = _deid(_written_and_read(0x00280106, marker))
    out = io.BytesIO()
    result.dataset.save_as(out, enforce_file_format=True)
    assert marker not in out.getvalue()
    assert "SmallestImagePixelValue (0028,0106): 8 values where the standard allows 1; removed" in result.flags


# Kept numbers, measurements and times of day: written back byte for byte without being decoded
# (decoding and re-encoding every kept element was most of the cost of de-identification).
UNREAD = ("Rows", "Columns", "BitsAllocated", "KVP", "SliceThickness", "PixelSpacing", "StudyTime", "SeriesTime",
          "ContentTime")


def test_kept_numbers_and_times_of_a_real_file_stay_undecoded_and_byte_for_byte() -> None:
    from pydicom.dataelem import RawDataElement

    from node.deid import PatientContext, UidMapper, deidentify

    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    before = {kw: original.get_item(pydicom.datadict.tag_for_keyword(kw)).value for kw in UNREAD}
    result = deidentify(original, PatientContext("MTP-TEST000020", 17),
                        UidMapper(b"test-secret-not-for-production-0020"))
    after = {kw: result.dataset.get_item(pydicom.datadict.tag_for_keyword(kw)) for kw in UNREAD}
    assert {kw: type(raw).__name__ for kw, raw in after.items()} == dict.fromkeys(UNREAD, RawDataElement.__name__)
    assert {kw: raw.value for kw, raw in after.items()} == before


@pytest.mark.parametrize(("tag", "name"), [(0x00189461, "FieldOfViewDimensionsInFloat"), (0x04000315, "attribute")])
def test_text_packed_into_an_fl_value_is_removed_with_the_reason(tag: int, name: str) -> None:
    # Four bytes of text read as one FL (VM fits) make a magnitude no measurement has; (0400,0315) has no keyword.
    result = _deid(_written_and_read(tag, b"MRKZ"))
    assert tag not in result.dataset
    assert (f"{name} {pydicom.tag.Tag(tag)}: values outside any physical range (not finite, above 1e9 or below "
            "1e-12 in magnitude); removed") in result.flags


def test_a_code_with_characters_its_vr_cannot_have_is_removed_with_the_reason() -> None:
    ds = _written_and_read(0x00080060, b"MRK.MODALITY.14")  # Modality, CS, read without a VR
    result = _deid(ds)
    assert 0x00080060 not in result.dataset
    assert "Modality (0008,0060): not a valid CS value; removed" in result.flags
