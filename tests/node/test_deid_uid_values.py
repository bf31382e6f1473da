"""UID values the de-identification meets besides one typed UID: several values, and values read with VR UN.

pydicom reads an explicit-VR element declared UN with the dictionary's VR unless
``pydicom.config.replace_un_with_known_vr`` is off (a documented switch some readers turn off to keep
the bytes as sent); then the value stays undecoded bytes. Either way, a UID must be replaced by the
same UID it would get when typed as UI (references between files stay consistent), and an element
the profile empties must come out empty. Expected UIDs are computed here from UidMapper's contract
(docs: "2.25." and the first 128 bits of HMAC-SHA256(secret, uid)).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from collections.abc import Iterator

import pydicom
import pytest
from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from node.deid import PatientContext, UidMapper, deidentify
from tests.node.minimal_ct import minimal_ct

SECRET = b"test-secret-not-for-production-0042"
PATIENT = PatientContext("MTP-UIDS0001", 9)
STUDY, SERIES = "1.2.999.999.42.2", "1.2.999.999.42.3"
UID_RE = re.compile(r"2\.25\.(0|[1-9][0-9]*)")


def _mapped(uid: str) -> str:
    digest = hmac.new(SECRET, uid.encode("utf-8"), hashlib.sha256).digest()
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"



def _written_and_read(ds: Dataset) -> pydicom.FileDataset:
    """Write ``ds`` as an explicit VR little endian file and read it back, as ingest would."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


@pytest.fixture
def un_kept_as_bytes() -> Iterator[None]:
    """Read UN elements as their bytes, not with the dictionary's VR."""
    before = config.replace_un_with_known_vr
    config.replace_un_with_known_vr = False
    try:
        yield
    finally:
        config.replace_un_with_known_vr = before


def test_every_value_of_a_multi_valued_uid_is_replaced_in_order() -> None:
    ds = minimal_ct(42)
    ds.IrradiationEventUID = ["1.2.999.999.42.10", "1.2.999.999.42.11", "1.2.840.10008.5.1.4.1.1.2"]
    out = deidentify(_written_and_read(ds), PATIENT, UidMapper(SECRET)).dataset
    # A UID defined by DICOM itself (root 1.2.840.10008) names a class, not the patient: kept.
    assert list(out.IrradiationEventUID) == [
        _mapped("1.2.999.999.42.10"), _mapped("1.2.999.999.42.11"), "1.2.840.10008.5.1.4.1.1.2"
    ]


def test_two_values_stay_two_values() -> None:
    ds = minimal_ct(42)
    ds.IrradiationEventUID = ["1.2.999.999.42.10", "1.2.999.999.42.11"]
    out = deidentify(_written_and_read(ds), PATIENT, UidMapper(SECRET)).dataset
    assert out["IrradiationEventUID"].VM == 2
    assert list(out.IrradiationEventUID) == [_mapped("1.2.999.999.42.10"), _mapped("1.2.999.999.42.11")]


@pytest.mark.usefixtures("un_kept_as_bytes")
def test_a_uid_read_as_un_gets_the_uid_it_gets_when_typed() -> None:
    as_un = minimal_ct(42)
    as_un.add(DataElement(0x0020000D, "UN", STUDY.encode("ascii") + b"\x00"))  # StudyInstanceUID
    as_un.add(DataElement(0x0020000E, "UN", SERIES.encode("ascii")))  # SeriesInstanceUID, even length
    read = _written_and_read(as_un)
    assert isinstance(read[0x0020000D].value, bytes)  # the premise: left undecoded
    out = deidentify(read, PATIENT, UidMapper(SECRET)).dataset
    assert out[0x0020000D].VR == "UI"
    assert out.StudyInstanceUID == _mapped(STUDY)
    assert out.SeriesInstanceUID == _mapped(SERIES)

    typed = minimal_ct(42)
    typed.StudyInstanceUID = STUDY
    assert deidentify(_written_and_read(typed), PATIENT, UidMapper(SECRET)).dataset.StudyInstanceUID == _mapped(STUDY)


@pytest.mark.usefixtures("un_kept_as_bytes")
def test_a_uid_read_as_un_with_a_stray_non_ascii_byte_is_still_replaced() -> None:
    ds = minimal_ct(42)
    ds.add(DataElement(0x0020000D, "UN", b"1.2.999.\xe9.42\x00"))
    first = deidentify(_written_and_read(ds), PATIENT, UidMapper(SECRET)).dataset.StudyInstanceUID
    again = minimal_ct(42)
    again.add(DataElement(0x0020000D, "UN", b"1.2.999.\xe9.42\x00"))
    second = deidentify(_written_and_read(again), PATIENT, UidMapper(SECRET)).dataset.StudyInstanceUID
    assert UID_RE.fullmatch(first), first
    assert "999" not in first
    assert second == first  # the same bytes map to the same UID in every file


@pytest.mark.usefixtures("un_kept_as_bytes")
@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_an_empty_uid_read_as_un_stays_empty() -> None:
    ds = minimal_ct(42)
    ds.add(DataElement(0x00200052, "UN", b"\x00\x00"))  # FrameOfReferenceUID: NUL padding only
    out = deidentify(_written_and_read(ds), PATIENT, UidMapper(SECRET)).dataset
    assert str(out.FrameOfReferenceUID).strip(" \x00") == ""


@pytest.mark.usefixtures("un_kept_as_bytes")
def test_an_attribute_the_profile_empties_comes_out_empty_when_read_as_un() -> None:
    ds = minimal_ct(42)
    ds.add(DataElement(0x00080050, "UN", b"ACC-ZQX-42"))  # AccessionNumber: Z
    out = deidentify(_written_and_read(ds), PATIENT, UidMapper(SECRET)).dataset
    assert out[0x00080050].value == b""  # what pydicom reads back for an empty UN element


def test_an_attribute_the_profile_empties_comes_out_as_empty_text() -> None:
    ds = minimal_ct(42)
    ds.AccessionNumber = "ACC-ZQX-42"  # Z
    out = deidentify(_written_and_read(ds), PATIENT, UidMapper(SECRET)).dataset
    assert out["AccessionNumber"].value == ""  # what pydicom reads back for an empty SH element
