"""Tests of node.deid: the PS3.15 Basic Application Level Confidentiality Profile on real and synthetic data.

Synthetic data uses obviously fake identities ("Test^Patient", "ID-TEST-0001") and UIDs under 1.2.999.999.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import re
import struct
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

from node.deid import (
    FULL_DATES_OPTION,
    MODIFIED_DATES_OPTION,
    PROFILE_NAME,
    DeidPolicy,
    PatientContext,
    UidMapper,
    deidentify,
)
from node.errors import BurnedInAnnotationError, DeidentificationError, NodeConfigError
from tests.node.deid_expected import BIRTH_DATE_TIME, DEVIATION_CODES, PSEUDONYM_TAGS, expected_code
from tests.node.minimal_ct import implicit_vr_file, minimal_ct

SECRET = b"test-secret-not-for-production-0001"
PSEUDONYM = "MTP-TEST000001"
SHIFT = 17
# Single-frame, multi-frame (emri_small, 10 frames), JPEG 2000 and JPEG lossless compressed, overlays.
REAL_FILES = (
    "CT_small.dcm",
    "MR_small.dcm",
    "emri_small.dcm",
    "JPEG2000.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "MR-SIEMENS-DICOM-WithOverlays.dcm",
)
# Attributes this node writes itself; checked by test_markers_* rather than by the table walk.
MARKERS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})
IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientAddress",
    "OtherPatientIDs",
    "OtherPatientNames",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "OperatorsName",
    "AccessionNumber",
    "StudyID",
    "StationName",
    "DeviceSerialNumber",
)
UID_RE = re.compile(r"2\.25\.(0|[1-9][0-9]*)")


@pytest.fixture
def deid_uids() -> UidMapper:
    return UidMapper(SECRET)


@pytest.fixture
def deid_patient() -> PatientContext:
    return PatientContext(PSEUDONYM, SHIFT)


@pytest.fixture
def deid_synthetic() -> Dataset:
    """A small CT-like data set of a fake patient, without file meta (as received over the network)."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.999.1.1"
    ds.StudyInstanceUID = "1.2.999.999.2"
    ds.SeriesInstanceUID = "1.2.999.999.3"
    ds.FrameOfReferenceUID = "1.2.999.999.4"
    ds.PatientName = "Test^Patient"
    ds.PatientID = "ID-TEST-0001"
    ds.Modality = "CT"
    ds.StudyDate = "20200115"
    ds.StudyTime = "101500"
    return ds


def _read(name: str) -> pydicom.FileDataset:
    path = get_testdata_file(name)
    if path is None:
        pytest.fail(f"test file {name} not found; install the dev extra (pydicom-data)")
    return pydicom.dcmread(path)


def _vals(value: Any) -> list[Any]:
    if value is None or value == "" or value == b"":
        return []
    items = value if isinstance(value, list | tuple | pydicom.multival.MultiValue) else [value]
    return [v if isinstance(v, bytes) else str(v) for v in items]


def _shift(text: str, days: int) -> str:
    day = datetime.strptime(text[:8], "%Y%m%d").date() + timedelta(days=days)
    return day.strftime("%Y%m%d") + text[8:]


def _expected_uid(uids: UidMapper, value: str) -> str:
    return value if value.startswith("1.2.840.10008.") else uids.map(value)


def _check_profile(orig: Dataset, out: Dataset, uids: UidMapper, days: int, top: bool = False) -> None:
    """Assert that every element of ``orig`` came out as the standard's table and the written-out deviations say."""
    for elem in orig:
        tag, vr = elem.tag, elem.VR
        where = f"{elem.keyword or 'private'} {tag}"
        before = _vals(elem.value) if vr != "SQ" else None
        after = out.get(tag)
        removed_group = tag.group % 2 == 0 and tag.group & 0xFF00 in (0x5000, 0x6000)
        if tag.is_private or tag.group == 0 or tag.element == 0 or removed_group:
            assert after is None, f"{where} should be removed"
            continue
        if top and tag in MARKERS:
            continue
        if top and tag in PSEUDONYM_TAGS:
            assert after is not None, where
            assert str(after.value) == PSEUDONYM, where
            continue
        code = expected_code(int(tag), vr)
        if vr in ("DA", "DT", "TM") and tag not in BIRTH_DATE_TIME and DEVIATION_CODES.get(int(tag)) != "K":
            # Modified Dates Option: dates and date-times shifted, times of day kept.
            assert after is not None, f"{where} should be kept (shifted)"
            expected = before if vr == "TM" else [_shift(v, days) if v else v for v in before or []]
            assert _vals(after.value) == expected, where
            continue
        if code == "D" and vr == "UI":
            code = "U"  # a mapped UID stands for the dummy
        if code == "X":
            assert after is None, f"{where} should be removed"
        elif code == "U":
            assert after is not None, where
            assert _vals(after.value) == [_expected_uid(uids, v) for v in before or []], where
        elif code == "K":
            assert after is not None, f"{where} should be kept"
            if vr == "SQ":
                assert len(after.value) == len(elem.value), where
                for item_in, item_out in zip(elem.value, after.value, strict=True):
                    _check_profile(item_in, item_out, uids, days)
            else:
                assert _vals(after.value) == before, f"{where} should be unchanged"
        elif code == "X/Z/U*" and after is not None and len(after.value):
            for item_in, item_out in zip(elem.value, after.value, strict=True):
                _check_profile(item_in, item_out, uids, days)
        elif code != "X/Z/U*":
            _check_emptied_or_dummy(code, where, elem, after)


def _check_emptied_or_dummy(code: str, where: str, elem: Any, after: Any) -> None:
    if after is None:
        assert code.startswith("X"), f"{where} ({code}) may not be removed"
        return
    if elem.VR == "SQ":
        # Z: no items; D: dummy items holding nothing of the original.
        assert all(len(item) == 0 for item in after.value), where
        assert "Z" in code or len(after.value) > 0, where
        return
    value = _vals(after.value)
    if not value:
        assert "Z" in code, f"{where} ({code}) may not be empty"
    else:
        assert "D" in code or code == "Z", f"{where} ({code}) has a value"
        assert value != _vals(elem.value), f"{where} ({code}) still holds the original value"


def _identifying_bytes(ds: Dataset) -> Iterator[bytes]:
    """Yield the identifying values of ``ds`` that must not survive anywhere in the output file."""
    for elem in ds.iterall():
        if elem.tag.is_private or elem.VR == "SQ":
            continue
        texts: list[str] = []
        if elem.keyword in IDENTIFYING or elem.VR == "DA":
            texts = [str(v) for v in _vals(elem.value)]
            if elem.VR == "PN":
                texts += [part for v in texts for part in re.split(r"[\^=]", v)]
        if expected_code(int(elem.tag), elem.VR) == "U":
            texts = [v for v in _vals(elem.value) if not v.startswith("1.2.840.10008.")]
        for text in texts:
            if len(text.strip()) >= 4:
                yield text.strip().encode("latin-1")


def _markers(ds: Dataset) -> tuple[list[str], list[tuple[str, str]], str]:
    codes = [(str(i.CodeValue), str(i.CodingSchemeDesignator)) for i in ds.DeidentificationMethodCodeSequence]
    return [str(v) for v in _vals(ds.DeidentificationMethod)], codes, str(ds.LongitudinalTemporalInformationModified)


# --- real public files ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_follows_the_profile_table(
    name: str, tmp_path: Path, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    original = _read(name)
    result = deidentify(original, deid_patient, deid_uids, DeidPolicy())
    path = tmp_path / f"deid-{name}"
    result.dataset.save_as(path)
    out = pydicom.dcmread(path)

    _check_profile(original, out, deid_uids, SHIFT, top=True)
    assert [e.tag for e in out.iterall() if e.tag.is_private] == []
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert "SourceApplicationEntityTitle" not in out.file_meta
    assert out.PixelData == original.PixelData


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_file_bytes_hold_no_original_identifier(
    name: str, tmp_path: Path, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    original = _read(name)
    # Vendor names are public and kept; an institution named like its scanner vendor is not a leak.
    public = " ".join(str(original.get(k, "")) for k in ("Manufacturer", "ManufacturerModelName")).encode("latin-1")
    needles = {n for n in _identifying_bytes(original) if n not in public}
    path = tmp_path / f"deid-{name}"
    deidentify(original, deid_patient, deid_uids).dataset.save_as(path)
    data = path.read_bytes()

    assert needles, "the file should have identifying values to look for"
    assert sorted(n for n in needles if n in data) == []


def test_multiframe_file_keeps_every_frame(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    original = _read("emri_small.dcm")
    out = deidentify(original, deid_patient, deid_uids).dataset
    assert out.NumberOfFrames == 10
    assert (out.pixel_array == original.pixel_array).all()


# --- UIDs --------------------------------------------------------------------------------------------------


def _series(count: int) -> list[pydicom.FileDataset]:
    """Instances of one fake series built from CT_small; the last one references the first."""
    instances = []
    for number in range(1, count + 1):
        ds = _read("CT_small.dcm")
        ds.PatientName = "Test^Patient"
        ds.PatientID = "ID-TEST-0001"
        ds.StudyInstanceUID = "1.2.999.999.2"
        ds.SeriesInstanceUID = "1.2.999.999.3"
        ds.FrameOfReferenceUID = "1.2.999.999.4"
        ds.SOPInstanceUID = f"1.2.999.999.1.{number}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = number
        instances.append(ds)
    ref = Dataset()
    ref.ReferencedSOPClassUID = CTImageStorage
    ref.ReferencedSOPInstanceUID = instances[0].SOPInstanceUID
    instances[-1].ReferencedImageSequence = Sequence([ref])
    return instances


def test_series_keeps_its_structure_and_references(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    outs = [deidentify(ds, deid_patient, deid_uids).dataset for ds in _series(4)]

    assert len({o.StudyInstanceUID for o in outs}) == 1
    assert len({o.SeriesInstanceUID for o in outs}) == 1
    assert len({o.FrameOfReferenceUID for o in outs}) == 1
    assert len({o.SOPInstanceUID for o in outs}) == 4
    assert outs[0].StudyInstanceUID not in ("1.2.999.999.2", "")
    assert outs[-1].ReferencedImageSequence[0].ReferencedSOPInstanceUID == outs[0].SOPInstanceUID
    assert outs[-1].ReferencedImageSequence[0].ReferencedSOPClassUID == CTImageStorage
    assert [o.file_meta.MediaStorageSOPInstanceUID for o in outs] == [o.SOPInstanceUID for o in outs]
    assert [o.InstanceNumber for o in outs] == [1, 2, 3, 4]


def test_well_known_uids_are_kept(deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    deid_synthetic.FrameOfReferenceUID = "1.2.840.10008.1.4.1.1"  # Talairach brain atlas frame of reference
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert out.SOPClassUID == CTImageStorage
    assert out.FrameOfReferenceUID == "1.2.840.10008.1.4.1.1"
    assert out.SOPInstanceUID == deid_uids.map("1.2.999.999.1.1")


def test_uid_mapper_is_deterministic_per_secret() -> None:
    first, again, other = UidMapper(SECRET), UidMapper(SECRET), UidMapper(b"another-test-secret-0002")
    assert first.map("1.2.999.999.2") == again.map("1.2.999.999.2")
    assert first.map("1.2.999.999.2") != other.map("1.2.999.999.2")
    assert first.map("1.2.999.999.2") != first.map("1.2.999.999.3")
    assert first.map("1.2.999.999.2\x00") == first.map("1.2.999.999.2")


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[1-9][0-9]{0,5}(\.(0|[1-9][0-9]{0,8})){1,12}", fullmatch=True))
def test_uid_mapper_returns_a_new_valid_uid(uid: str) -> None:
    mapped = UidMapper(SECRET).map(uid)
    assert UID_RE.fullmatch(mapped)
    assert len(mapped) <= 64
    assert mapped != uid


def test_uid_mapper_refuses_a_short_secret() -> None:
    with pytest.raises(NodeConfigError, match="UID secret is 5 bytes, expected at least 16"):
        UidMapper(b"short")


def test_uid_mapper_refuses_an_empty_uid(deid_uids: UidMapper) -> None:
    with pytest.raises(DeidentificationError, match="empty UID"):
        deid_uids.map(" ")


# --- dates -------------------------------------------------------------------------------------------------


def _dated(ds: Dataset) -> Dataset:
    ds.SeriesDate = "20200115"
    ds.AcquisitionDate = "20200116"
    ds.ContentDate = "20200117"
    ds.InstanceCreationDate = "20200118"
    ds.AcquisitionDateTime = "20200115101530.123456+0100"
    ds.ContentTime = "101530"
    ds.PatientBirthDate = "19800101"
    drug = Dataset()
    drug.RadiopharmaceuticalStartDateTime = "20200115093000"
    ds.RadiopharmaceuticalInformationSequence = Sequence([drug])
    return ds


def test_dates_of_a_patient_shift_by_the_same_days(deid_synthetic: Dataset, deid_uids: UidMapper) -> None:
    out = deidentify(_dated(deid_synthetic), PatientContext(PSEUDONYM, 40), deid_uids).dataset

    assert [out.StudyDate, out.SeriesDate, out.AcquisitionDate, out.ContentDate, out.InstanceCreationDate] == [
        "20200224",
        "20200224",
        "20200225",
        "20200226",
        "20200227",
    ]
    assert out.AcquisitionDateTime == "20200224101530.123456+0100"
    assert out.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime == "20200224093000"
    assert (out.StudyTime, out.ContentTime) == ("101500", "101530")


def test_another_patient_gets_another_shift(deid_synthetic: Dataset, deid_uids: UidMapper) -> None:
    first = deidentify(_dated(deid_synthetic), PatientContext("MTP-TEST000001", 40), deid_uids).dataset
    second = deidentify(_dated(deid_synthetic), PatientContext("MTP-TEST000002", -5), deid_uids).dataset
    assert (first.StudyDate, second.StudyDate) == ("20200224", "20200110")
    assert second.AcquisitionDateTime == "20200110101530.123456+0100"


def test_birth_date_is_emptied_not_shifted(deid_synthetic: Dataset, deid_uids: UidMapper) -> None:
    out = deidentify(_dated(deid_synthetic), PatientContext(PSEUDONYM, 40), deid_uids).dataset
    assert "PatientBirthDate" in out
    assert out.PatientBirthDate == ""


@settings(max_examples=60, deadline=None)
@given(day=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)), days=st.integers(-20000, 20000))
def test_study_date_moves_by_exactly_the_shift(day: date, days: int) -> None:
    ds = Dataset()
    ds.StudyDate = day.strftime("%Y%m%d")
    out = deidentify(ds, PatientContext(PSEUDONYM, days), UidMapper(SECRET)).dataset
    assert datetime.strptime(out.StudyDate, "%Y%m%d").date() - day == timedelta(days=days)


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [("20201231", 1, "20210101"), ("20200101", -1, "20191231"), ("20200228", 1, "20200229"),
     ("20200115", 0, "20200115")],
)
def test_a_shift_of_one_day_moves_the_date_and_none_leaves_it(value: str, days: int, expected: str) -> None:
    ds = Dataset()
    ds.StudyDate = value
    ds.AcquisitionDateTime = value + "101530"
    out = deidentify(ds, PatientContext(PSEUDONYM, days), UidMapper(SECRET)).dataset
    assert (out.StudyDate, out.AcquisitionDateTime) == (expected, expected + "101530")


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
@pytest.mark.parametrize("value", ["2020", "202001", "20200115101530"])
def test_a_da_holding_a_partial_date_or_a_date_time_is_emptied_not_shifted(value: str) -> None:
    # Valid as DT, not as DA (eight digits): read as a date time it would be shifted and kept.
    ds = Dataset()
    ds.StudyDate = value
    result = deidentify(ds, PatientContext(PSEUDONYM, 40), UidMapper(SECRET))
    assert result.dataset.StudyDate == ""
    assert result.flags == ("StudyDate (0008,0020): not a valid DA value, so it could not be shifted; emptied",)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2020", "2020"),
        ("202001", "202002"),
        ("20200115", "20200224"),
        ("2020011510", "2020022410"),
        ("20200115101530.5-0500", "20200224101530.5-0500"),
    ],
)
def test_datetime_keeps_its_precision_and_offset(
    deid_synthetic: Dataset, deid_uids: UidMapper, value: str, expected: str
) -> None:
    deid_synthetic.AcquisitionDateTime = value
    out = deidentify(deid_synthetic, PatientContext(PSEUDONYM, 40), deid_uids).dataset
    assert out.AcquisitionDateTime == expected


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_unreadable_date_is_emptied_and_flagged(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.ContentDate = "2020-13-45"
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    assert result.dataset.ContentDate == ""
    assert any("ContentDate (0008,0023): not a valid DA value" in f for f in result.flags)


def test_shift_past_year_9999_is_refused(deid_synthetic: Dataset, deid_uids: UidMapper) -> None:
    deid_synthetic.StudyDate = "99991225"
    with pytest.raises(DeidentificationError) as refused:
        deidentify(deid_synthetic, PatientContext(PSEUDONYM, 17), deid_uids)
    assert str(refused.value) == ("StudyDate (0008,0020) cannot be shifted by 17 days: the result falls outside "
                                  "years 1-9999; use a smaller date_shift_days")


# --- markers -----------------------------------------------------------------------------------------------


def test_markers_name_the_profile_and_the_modified_dates_option(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert out.PatientIdentityRemoved == "YES"
    assert _markers(out) == ([PROFILE_NAME, MODIFIED_DATES_OPTION], [("113100", "DCM"), ("113107", "DCM")], "MODIFIED")


def test_markers_name_the_full_dates_option_when_nothing_is_shifted(
    deid_synthetic: Dataset, deid_uids: UidMapper
) -> None:
    result = deidentify(deid_synthetic, PatientContext(PSEUDONYM, 0), deid_uids)
    assert _markers(result.dataset) == (
        [PROFILE_NAME, FULL_DATES_OPTION],
        [("113100", "DCM"), ("113106", "DCM")],
        "UNMODIFIED",
    )
    assert result.dataset.StudyDate == "20200115"
    assert any("real dates" in f for f in result.flags)


def test_markers_keep_an_earlier_deidentification(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    original = _read("emri_small.dcm")  # already says BASIC APPLICATION LEVEL CONFIDENTIALITY PROFILE
    out = deidentify(original, deid_patient, deid_uids).dataset
    methods, codes, _ = _markers(out)
    assert methods == [original.DeidentificationMethod, PROFILE_NAME, MODIFIED_DATES_OPTION]
    assert codes == [("113100", "DCM"), ("113107", "DCM")]


# --- burned-in annotation ------------------------------------------------------------------------------------


def test_burned_in_annotation_is_refused_by_default(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.BurnedInAnnotation = "YES"
    with pytest.raises(BurnedInAnnotationError, match=r"BurnedInAnnotation \(0028,0301\) is YES"):
        deidentify(deid_synthetic, deid_patient, deid_uids)


def test_burned_in_annotation_is_kept_and_flagged_by_policy(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.BurnedInAnnotation = "YES"
    result = deidentify(deid_synthetic, deid_patient, deid_uids, DeidPolicy(burned_in="flag"))
    assert result.flags[0] == "burned-in annotation declared; kept by policy"
    assert result.dataset.BurnedInAnnotation == "YES"
    assert "Burned-in annotation declared and retained" in result.dataset.DeidentificationMethod


def test_secondary_capture_without_declaration_is_flagged(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    result = deidentify(_read("JPEG2000.dcm"), deid_patient, deid_uids)
    assert any(f.startswith("BurnedInAnnotation (0028,0301) absent on a Secondary Capture") for f in result.flags)


def test_recognizable_face_is_flagged(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.RecognizableVisualFeatures = "YES"
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    assert result.flags == ("RecognizableVisualFeatures (0028,0302) is YES: the image may show the patient's face",)


# --- element actions -----------------------------------------------------------------------------------------


def test_input_is_not_modified(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    original = _read("CT_small.dcm")
    before = io.BytesIO()
    original.save_as(before)
    deidentify(original, deid_patient, deid_uids)
    after = io.BytesIO()
    original.save_as(after)
    assert after.getvalue() == before.getvalue()


def test_counts_removed_and_replaced_elements(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.PatientAge = "042Y"  # X
    deid_synthetic.InstitutionAddress = "1 Test Street"  # X
    deid_synthetic.AccessionNumber = "ACC-TEST-1"  # Z
    block = deid_synthetic.private_block(0x0009, "TEST_CREATOR", create=True)
    block.add_new(0x01, "LO", "private test value")  # creator + element: 2 removed
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    # Replaced: 4 UIDs, StudyDate, AccessionNumber, PatientName, PatientID. StudyTime and Modality stay.
    assert (result.removed, result.replaced) == (4, 8)


def test_private_tags_are_removed_everywhere(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.999.999.1.9"
    item.private_block(0x0011, "TEST_CREATOR", create=True).add_new(0x01, "LO", "private test value")
    deid_synthetic.ReferencedImageSequence = Sequence([item])
    deid_synthetic.private_block(0x0009, "TEST_CREATOR", create=True).add_new(0x01, "DA", "20200115")
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert [e.tag for e in out.iterall() if e.tag.is_private] == []
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == deid_uids.map("1.2.999.999.1.9")


def test_private_tags_kept_by_policy_are_flagged_and_date_shifted(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.private_block(0x0009, "TEST_CREATOR", create=True).add_new(0x01, "DA", "20200115")
    result = deidentify(deid_synthetic, deid_patient, deid_uids, DeidPolicy(keep_private_tags=True))
    assert result.dataset[0x00091001].value == "20200201"
    assert "private attributes kept by policy; the profile does not cover them" in result.flags
    assert "Private attributes retained without review" in result.dataset.DeidentificationMethod


def test_overlays_and_curves_go_waveforms_stay(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.add_new(0x60000010, "US", 16)
    deid_synthetic.add_new(0x60000011, "US", 16)
    deid_synthetic.add_new(0x60003000, "OW", b"\xff" * 32)
    deid_synthetic.add_new(0x60024000, "LT", "overlay test comment")
    deid_synthetic.add_new(0x50000005, "US", 1)
    waveform = Dataset()
    waveform.NumberOfWaveformChannels = 1
    deid_synthetic.WaveformSequence = Sequence([waveform])
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert [e.tag for e in out if e.tag.group & 0xFF00 in (0x5000, 0x6000)] == []
    assert out.WaveformSequence[0].NumberOfWaveformChannels == 1


def test_nested_items_are_cleaned_at_every_depth(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    instance = Dataset()
    instance.ReferencedSOPInstanceUID = "1.2.999.999.1.7"
    instance.InstitutionAddress = "1 Test Street"  # X, two levels down
    series = Dataset()
    series.SeriesInstanceUID = "1.2.999.999.3"
    series.ReferencedInstanceSequence = Sequence([instance])
    deid_synthetic.ReferencedSeriesSequence = Sequence([series])
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    item = out.ReferencedSeriesSequence[0]
    assert item.SeriesInstanceUID == out.SeriesInstanceUID
    assert item.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == deid_uids.map("1.2.999.999.1.7")
    assert "InstitutionAddress" not in item.ReferencedInstanceSequence[0]


def test_removed_sequence_takes_its_items_along(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    request = Dataset()
    request.RequestedProcedureID = "RP-TEST-1"
    request.ScheduledProcedureStepDescription = "Test procedure"
    deid_synthetic.RequestAttributesSequence = Sequence([request])
    other = Dataset()
    other.PatientID = "ID-TEST-OTHER"
    deid_synthetic.OtherPatientIDsSequence = Sequence([other])
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    assert "RequestAttributesSequence" not in result.dataset
    assert "OtherPatientIDsSequence" not in result.dataset


@pytest.mark.parametrize(
    ("keyword", "value", "dummy"),
    [
        ("OperatorsName", "Test^Operator", "ANONYMIZED"),  # X/Z/D on PN
        ("DeviceSerialNumber", "SN-TEST-1", "ANONYMIZED"),  # X/Z/D on LO
        ("ProtocolName", "Test protocol", "ANONYMIZED"),  # X/D
        ("ContrastBolusAgent", "Test agent", "ANONYMIZED"),  # Z/D
        ("VerifyingObserverName", "Test^Observer", "ANONYMIZED"),  # D
    ],
)
def test_d_writes_a_dummy_of_the_vr(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext, keyword: str, value: str, dummy: str
) -> None:
    setattr(deid_synthetic, keyword, value)
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert str(getattr(out, keyword)) == dummy


def test_d_on_a_sequence_leaves_one_empty_item(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    text = Dataset()
    text.UnformattedTextValue = "Test^Patient ID-TEST-0001"
    annotation = Dataset()
    annotation.TextObjectSequence = Sequence([text])
    deid_synthetic.GraphicAnnotationSequence = Sequence([annotation])
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert [len(item) for item in out.GraphicAnnotationSequence] == [0]


def test_z_and_empty_d_choices_leave_empty_values(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.PatientSex = "O"  # Z
    deid_synthetic.ReferringPhysicianName = "Test^Referrer"  # Z
    deid_synthetic.InstitutionName = ""  # X/Z/D already empty: nothing to replace
    deid_synthetic.ReferencedStudySequence = Sequence([Dataset()])  # X/Z
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert (out.PatientSex, out.ReferringPhysicianName, out.InstitutionName) == ("", "", "")
    assert len(out.ReferencedStudySequence) == 0


def test_file_meta_follows_the_new_instance_uid(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    original = _read("CT_small.dcm")
    out = deidentify(original, deid_patient, deid_uids).dataset
    assert out.file_meta.MediaStorageSOPInstanceUID == deid_uids.map(original.SOPInstanceUID)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.preamble == b"\x00" * 128  # CT_small's preamble holds a TIFF header
    assert out.filename is None


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pseudonym", ["", "Test^Patient", "has space", "x" * 65, "-MTP"])
def test_patient_context_refuses_an_unusable_pseudonym(pseudonym: str) -> None:
    with pytest.raises(DeidentificationError, match=r"pseudonym .* cannot be written as PatientID"):
        PatientContext(pseudonym, 1)


@pytest.mark.parametrize("days", ["3", 2.5, True])
def test_patient_context_refuses_a_non_integer_shift(days: Any) -> None:
    with pytest.raises(DeidentificationError, match=r"date_shift_days is .*, expected a whole number"):
        PatientContext(PSEUDONYM, days)


def test_deidentify_refuses_what_is_not_a_data_set(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    with pytest.raises(DeidentificationError, match="expected a pydicom Dataset, got dict"):
        deidentify({"PatientName": "Test^Patient"}, deid_patient, deid_uids)  # type: ignore[arg-type]


def test_deidentified_copy_is_independent(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    original = _read("MR_small.dcm")
    pristine = copy.deepcopy(original)
    out = deidentify(original, deid_patient, deid_uids).dataset
    out.Modality = "OT"
    assert original.Modality == pristine.Modality == "MR"


# --- attributes the table does not list, and rule-level deviations ---------------------------------------------


def test_unlisted_free_text_is_replaced_and_named_in_a_flag(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.SegmentLabel = "MARK-0001-ZQX"  # LO
    deid_synthetic.EvaluatorName = "MARK^0002^ZQX"  # PN
    deid_synthetic.RetrieveURL = "https://pacs.example.invalid/MARK-0003-ZQX"  # UR
    deid_synthetic.ViewName = "MARK-0004-ZQX"  # SH
    deid_synthetic.CalibrationNotes = "MARK-0005-ZQX"  # LT
    deid_synthetic.add_new(0x0018FFF0, "UN", b"MARK-0006-ZQX\x00")  # public, unknown to the dictionary
    deid_synthetic.ViewCodeSequence = Sequence([Dataset()])
    deid_synthetic.ViewCodeSequence[0].CodingSchemeName = "MARK-0007-ZQX"  # ST, in an item
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    out = result.dataset

    assert [out.SegmentLabel, out.EvaluatorName, out.RetrieveURL, out.ViewName, out.CalibrationNotes] == [
        "ANONYMIZED"
    ] * 5
    assert 0x0018FFF0 not in out  # not defined by the standard: it cannot be judged, so it goes
    assert out.ViewCodeSequence[0].CodingSchemeName == "ANONYMIZED"
    buf = io.BytesIO()
    out.save_as(buf, implicit_vr=False, little_endian=True)
    assert b"MARK" not in buf.getvalue()
    (flag,) = [f for f in result.flags if f.startswith("free text outside the profile table replaced")]
    assert "SegmentLabel (0062,0005)" in flag
    assert "attribute (0018,FFF0): not defined by the standard, removed" in result.flags
    assert "MARK" not in flag


@pytest.mark.parametrize(
    ("keyword", "flag_start"),
    [("SegmentLabel", "free text outside"), ("Modality", "Modality")],  # unlisted free text; a kept code
)
def test_an_empty_value_stays_empty_without_a_flag(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext, keyword: str, flag_start: str
) -> None:
    setattr(deid_synthetic, keyword, "")
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    assert getattr(result.dataset, keyword) == ""
    assert not any(f.startswith(flag_start) for f in result.flags)


def test_allow_listed_free_text_and_unlisted_coded_values_are_kept(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.Manufacturer = "Test Vendor"
    deid_synthetic.ConvolutionKernel = "B30f"
    deid_synthetic.RescaleType = "HU"
    deid_synthetic.BodyPartExamined = "CHEST"  # CS: not free text
    deid_synthetic.SliceThickness = "1.25"  # DS
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "T-D3000", "SRT", "Chest"
    deid_synthetic.AnatomicRegionSequence = Sequence([region])
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    out = result.dataset
    assert [out.Manufacturer, out.ConvolutionKernel, out.RescaleType, out.BodyPartExamined] == [
        "Test Vendor", "B30f", "HU", "CHEST"
    ]  # fmt: skip
    assert str(out.SliceThickness) == "1.25"
    item = out.AnatomicRegionSequence[0]
    assert (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning) == ("T-D3000", "SRT", "Chest")
    assert not any(f.startswith("free text outside") for f in result.flags)


def test_d_on_a_uid_maps_it(deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    deid_synthetic.add_new(0x006A0003, "UI", "1.2.999.999.7")  # AnnotationGroupUID: D in the 2026c table
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert out[0x006A0003].value == deid_uids.map("1.2.999.999.7")


def test_public_version_stamps_are_kept_local_ones_shifted(deid_synthetic: Dataset, deid_uids: UidMapper) -> None:
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "T-D3000", "SRT", "Chest"
    code.ContextGroupVersion = "20040112000000"  # a DCMR release: kept
    code.ContextGroupLocalVersion = "20200115000000"  # the hospital's own extension: a date like any other
    deid_synthetic.AnatomicRegionSequence = Sequence([code])
    out = deidentify(deid_synthetic, PatientContext(PSEUDONYM, 40), deid_uids).dataset
    item = out.AnatomicRegionSequence[0]
    assert (item.ContextGroupVersion, item.ContextGroupLocalVersion) == ("20040112000000", "20200224000000")


def test_file_meta_loses_the_rtv_communication_instance_uid(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    original = _read("CT_small.dcm")
    original.file_meta.add_new(0x00020033, "UI", "1.2.999.999.9")  # RTVCommunicationSOPInstanceUID
    out = deidentify(original, deid_patient, deid_uids).dataset
    assert 0x00020033 not in out.file_meta


def test_unlisted_dates_are_shifted_too(deid_synthetic: Dataset, deid_uids: UidMapper) -> None:
    deid_synthetic.SecondaryReviewDate = "20200115"  # DA the table does not list
    deid_synthetic.StudyUpdateDateTime = "20200115101530"  # DT the table does not list
    out = deidentify(deid_synthetic, PatientContext(PSEUDONYM, 40), deid_uids).dataset
    assert (out.SecondaryReviewDate, out.StudyUpdateDateTime) == ("20200224", "20200224101530")


def test_an_action_the_engine_does_not_apply_stops_the_de_identification(monkeypatch: pytest.MonkeyPatch) -> None:
    # A table entry with a code the engine does not know (a future edition, a typo) must not keep the value.
    import dataclasses

    from node import deid

    rules = dict(deid.RULES_BY_TAG)
    rules[0x00080080] = dataclasses.replace(rules[0x00080080], action="X/Q")
    monkeypatch.setattr(deid, "RULES_BY_TAG", rules)
    ds = Dataset()
    ds.InstitutionName = "Test Institution"
    with pytest.raises(DeidentificationError) as stopped:
        deidentify(ds, PatientContext(PSEUDONYM, SHIFT), UidMapper(SECRET))
    assert str(stopped.value) == (
        "InstitutionName (0008,0080): the profile table gives the action 'X/Q', which this engine does not apply "
        "(it knows C, D, K, U, U*, X, Z); fix the table before de-identifying")


def test_an_unlisted_attribute_given_an_unknown_action_stops_the_de_identification(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from node import deid

    monkeypatch.setattr(deid, "_unlisted_code", lambda tag, vr: "k")
    ds = Dataset()
    ds.ContentLabel = "LABEL"  # (0070,0080), CS, not in the table
    with pytest.raises(DeidentificationError, match=r"ContentLabel \(0070,0080\): the profile table gives the "
                                                    r"action 'k'"):
        deidentify(ds, PatientContext(PSEUDONYM, SHIFT), UidMapper(SECRET))


# --- markers of an earlier de-identification, counts, file meta -----------------------------------------------


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def test_markers_merge_with_an_earlier_deidentification_without_repeating_it(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    """PS3.15 E.1: a second de-identification adds to the record of the first, never drops or repeats it."""
    deid_synthetic.PatientIdentityRemoved = "YES"
    deid_synthetic.DeidentificationMethod = ["Site tool 2.1", PROFILE_NAME]
    deid_synthetic.DeidentificationMethodCodeSequence = Sequence(
        [
            _code("113100", "DCM", "Basic Application Confidentiality Profile"),
            _code("113101", "DCM", "Clean Pixel Data Option"),
            _code("113107", "99LOCAL", "A local code that only shares the number"),
        ]
    )
    deid_synthetic.LongitudinalTemporalInformationModified = "REMOVED"
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert out.PatientIdentityRemoved == "YES"
    assert list(out.DeidentificationMethod) == [
        "Site tool 2.1",
        "DICOM PS3.15 E.1 Basic Application Level Confidentiality Profile",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ]
    codes = [(str(i.CodeValue), str(i.CodingSchemeDesignator), str(i.CodeMeaning))
             for i in out.DeidentificationMethodCodeSequence]  # fmt: skip
    assert codes == [
        ("113100", "DCM", "Basic Application Confidentiality Profile"),
        ("113101", "DCM", "Clean Pixel Data Option"),
        ("113107", "99LOCAL", "A local code that only shares the number"),
        ("113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ]
    # Dates were removed by the earlier tool: shifting what is left does not make them less modified.
    assert out.LongitudinalTemporalInformationModified == "REMOVED"


@pytest.mark.parametrize(
    ("earlier", "shift", "expected"),
    [
        (None, 0, "UNMODIFIED"),
        (None, SHIFT, "MODIFIED"),
        ("modified ", 0, "MODIFIED"),  # read leniently: case and padding
        ("MODIFIED", SHIFT, "MODIFIED"),
        ("UNMODIFIED", SHIFT, "MODIFIED"),
        ("REMOVED", 0, "REMOVED"),
        ("SOMETIMES", 0, "UNMODIFIED"),  # not a defined term: says nothing about earlier changes
    ],
)
def test_temporal_marker_never_claims_less_than_an_earlier_deidentification(
    deid_synthetic: Dataset, deid_uids: UidMapper, earlier: str | None, shift: int, expected: str
) -> None:
    if earlier is not None:
        deid_synthetic.add_new(0x00280303, "CS", earlier)
    out = deidentify(deid_synthetic, PatientContext(PSEUDONYM, shift), deid_uids).dataset
    assert out.LongitudinalTemporalInformationModified == expected


def test_each_element_removed_counts_once_whichever_check_removes_it(
    deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    """Removed by the rule read from the dictionary (implicit VR), as malformed, and by tag; one each."""
    base = deidentify(implicit_vr_file(21), deid_patient, deid_uids).removed
    extra = [
        DataElement(0x00080008, "CS", "BAD;TYPE"),  # Image Type (kept): a character no code string has
        DataElement(0x00080081, "ST", "1 Test Street"),  # Institution Address: X, its VR known only from the dictionary
        DataElement(0x00185100, "CS", "HFS\\FFS\\HFP"),  # Patient Position (kept): 3 values where 1 is allowed
    ]
    removed = deidentify(implicit_vr_file(21, *extra), deid_patient, deid_uids).removed
    assert removed - base == 3
    # Held in memory (pydicom writes no group lengths): declared VRs and elements removed by their tag.
    declared = minimal_ct_with_file_meta(22)
    before = deidentify(copy.deepcopy(declared), deid_patient, deid_uids).removed
    declared.add_new(0x00185100, "LO", "HFS")  # declared LO, the standard says CS
    declared.add_new(0x00180000, "UL", 8)  # a group length
    declared.add_new(0x00000110, "US", 7)  # a command element (Message ID)
    declared.add_new(0x60003000, "OW", b"\x01\x02")  # overlay data, a repeating group the table removes
    assert deidentify(declared, deid_patient, deid_uids).removed - before == 4


def minimal_ct_with_file_meta(n: int) -> Dataset:
    """:func:`minimal_ct` with the file meta an explicit-VR file of it would have."""
    return _with_file_meta(minimal_ct(n))


def _with_file_meta(ds: Dataset) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_file_meta_names_the_data_sets_new_instance_uid_even_when_the_file_disagreed(
    deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    ds = minimal_ct_with_file_meta(23)
    ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.UID("1.2.999.999.23.77")  # the file contradicts itself
    out = deidentify(ds, deid_patient, deid_uids).dataset
    assert out.SOPInstanceUID == deid_uids.map("1.2.999.999.23.1")
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID


def test_file_meta_instance_uid_is_mapped_when_the_data_set_has_none(
    deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    ds = minimal_ct_with_file_meta(24)
    del ds.SOPInstanceUID
    out = deidentify(ds, deid_patient, deid_uids).dataset
    assert "SOPInstanceUID" not in out
    assert out.file_meta.MediaStorageSOPInstanceUID == deid_uids.map("1.2.999.999.24.1")


# --- UID mapping, modality and pixel flags, worked out by hand --------------------------------------------------


def test_uid_mapping_is_hmac_sha256_of_the_uid_first_128_bits_as_a_2_25_uid() -> None:
    digest = hmac.new(SECRET, b"1.2.999.999.7", hashlib.sha256).digest()
    assert UidMapper(SECRET).map("1.2.999.999.7 ") == "2.25." + str(int(digest[:16].hex(), 16))


def test_uid_mapper_takes_a_secret_of_exactly_16_bytes_and_names_what_it_refuses() -> None:
    assert UidMapper(b"k" * 16).map("1.2.999.999.7").startswith("2.25.")
    with pytest.raises(NodeConfigError, match=r"^UID secret is 15 bytes, expected at least 16 random bytes; "
                       r"generate one with secrets\.token_bytes\(32\) and keep it in the node settings$"):  # fmt: skip
        UidMapper(b"k" * 15)
    with pytest.raises(NodeConfigError, match=r"^UID secret is str, expected"):
        UidMapper("k" * 32)  # type: ignore[arg-type]


def test_uid_mapper_refuses_an_empty_uid_with_what_to_do(deid_uids: UidMapper) -> None:
    with pytest.raises(DeidentificationError, match=r"^cannot map an empty UID; leave empty UID values as they are$"):
        deid_uids.map(" \x00")


@pytest.mark.parametrize(("modality", "expected"), [("CT", "CT"), ("MR", "MR"), ("XYZZY", "OT"), ("ct", "OT")])
def test_modality_that_is_not_a_defined_term_becomes_ot_and_is_flagged(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext, modality: str, expected: str
) -> None:
    """A modality is a short code string, but a site can write anything into it; only defined terms go through."""
    deid_synthetic.Modality = modality
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    assert result.dataset.Modality == expected
    flag = "Modality (0008,0060): not a defined term of the standard; replaced by OT"
    assert (flag in result.flags) == (expected != modality)


@pytest.mark.parametrize(
    ("sop_class", "declared", "flagged"),
    [
        ("1.2.840.10008.5.1.4.1.1.7", None, True),  # Secondary Capture, nothing said
        ("1.2.840.10008.5.1.4.1.1.7", "", True),  # said nothing either
        ("1.2.840.10008.5.1.4.1.1.7", "NO", False),  # declared clean
        ("1.2.840.10008.5.1.4.1.1.6.1", None, True),  # Ultrasound
        (CTImageStorage, None, False),  # CT rarely carries text in its pixels
    ],
)
def test_text_prone_images_without_a_burned_in_declaration_are_flagged(
    deid_synthetic: Dataset,
    deid_uids: UidMapper,
    deid_patient: PatientContext,
    sop_class: str,
    declared: str | None,
    flagged: bool,
) -> None:
    deid_synthetic.SOPClassUID = sop_class
    if declared is not None:
        deid_synthetic.BurnedInAnnotation = declared
    flags = deidentify(deid_synthetic, deid_patient, deid_uids).flags
    name = pydicom.uid.UID(sop_class).name
    expected = (f"BurnedInAnnotation (0028,0301) absent on a {name} image, a kind that often has text in the "
                "pixels; the pixels were not checked")  # fmt: skip
    assert (expected in flags) == flagged
    assert not any(f.startswith("BurnedInAnnotation") and f != expected for f in flags)


def test_no_shift_is_flagged_in_full(deid_synthetic: Dataset, deid_uids: UidMapper) -> None:
    result = deidentify(deid_synthetic, PatientContext(PSEUDONYM, 0), deid_uids)
    assert "date_shift_days is 0: real dates and times kept (Full Dates Option)" in result.flags


def test_missing_patient_name_and_id_are_added_as_the_pseudonym_with_their_vrs(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    del deid_synthetic.PatientName
    del deid_synthetic.PatientID
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert (out["PatientName"].VR, str(out.PatientName)) == ("PN", PSEUDONYM)
    assert (out["PatientID"].VR, out.PatientID) == ("LO", PSEUDONYM)


def _explicit_file(ds: Dataset) -> pydicom.FileDataset:
    """``ds`` written as an explicit-VR file and read back as the node reads it."""
    buffer = io.BytesIO()
    _with_file_meta(ds).save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def test_a_choice_of_vrs_is_named_in_full_when_the_declared_one_is_refused(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.add_new(0x00280106, "OB", b"\x01\x00")  # Smallest Image Pixel Value: US or SS
    result = deidentify(_explicit_file(deid_synthetic), deid_patient, deid_uids)
    assert "SmallestImagePixelValue (0028,0106): declared with VR OB, the standard defines SS/US; removed" in (
        result.flags
    )
    assert "SmallestImagePixelValue" not in result.dataset


def test_kept_numbers_of_several_values_stay_as_they_were(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    """Decoded values are checked as the file would spell them: backslash between values, nothing else."""
    deid_synthetic.ImagePositionPatient = ["1.5", "-2", "3e1"]  # DS, 3 values
    deid_synthetic.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]  # DS, 6 values
    deid_synthetic.add_new(0x00180088, "DS", "0.5")
    out = deidentify(deid_synthetic, deid_patient, deid_uids)
    assert [str(v) for v in out.dataset.ImagePositionPatient] == ["1.5", "-2", "3e1"]
    assert len(out.dataset.ImageOrientationPatient) == 6
    assert str(out.dataset.SpacingBetweenSlices) == "0.5"
    assert not any("ImagePosition" in f or "ImageOrientation" in f for f in out.flags)


def test_a_newer_date_time_sent_as_un_is_judged_by_its_standard_vr(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    """Effective Start DateTime (0040,A034) is newer than pydicom's dictionary, so UN stays UN when read."""
    deid_synthetic.add_new(0x0040A034, "UN", b"MRK NOT A DATE QZ ")
    read = _explicit_file(deid_synthetic)
    assert read.get_item(0x0040A034).VR == "UN"
    result = deidentify(read, deid_patient, deid_uids)
    assert 0x0040A034 not in result.dataset
    assert "attribute (0040,A034): not a valid DT value; removed" in result.flags


def test_a_sequence_the_table_removes_goes_without_being_read_even_when_unreadable(
    deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    """Nothing is lost to bad input: Other Patient IDs Sequence (X) holding three stray bytes."""
    buffer = io.BytesIO()
    _explicit_file(minimal_ct(31)).save_as(buffer, enforce_file_format=True)
    stray = b"\xfe\xff\x00"
    element = struct.pack("<HH2sHI", 0x0010, 0x1002, b"SQ", 0, len(stray)) + stray
    read = pydicom.dcmread(io.BytesIO(buffer.getvalue() + element))
    with pytest.raises(OSError, match="No tag to read"):
        read[0x00101002].value  # noqa: B018 (decoding it is what fails)
    read = pydicom.dcmread(io.BytesIO(buffer.getvalue() + element))
    result = deidentify(read, deid_patient, deid_uids)
    assert 0x00101002 not in result.dataset


def test_a_date_the_table_removes_is_shifted_when_its_vr_comes_from_the_dictionary(
    deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    """Modified Dates Option: Last Menstrual Date (X) read from an implicit-VR file is shifted, like any date."""
    read = implicit_vr_file(32, DataElement(0x001021D0, "DA", "20200115"))
    assert read.get_item(0x001021D0).VR is None
    out = deidentify(read, deid_patient, deid_uids).dataset
    assert out.LastMenstrualDate == _shift("20200115", SHIFT)


def test_x_or_d_sequence_becomes_an_empty_dummy_and_an_empty_x_or_d_text_goes(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    item = Dataset()
    item.PersonName = "Test^Operator"
    deid_synthetic.OperatorIdentificationSequence = Sequence([item])  # X/D
    deid_synthetic.ProtocolName = ""  # X/D: nothing to keep, so not the dummy
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    # D on a sequence: one empty item (a dummy of non-zero length holding nothing of the original).
    assert [len(i) for i in out.OperatorIdentificationSequence] == [0]
    assert "ProtocolName" not in out


def test_refusing_burned_in_annotation_says_how_to_go_on(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.BurnedInAnnotation = "YES"
    message = (
        "BurnedInAnnotation (0028,0301) is YES: the pixels may show identifying text, which this profile does not "
        "clean; review the image, or de-identify with DeidPolicy(burned_in='flag') to keep it flagged for manual "
        "review"
    )
    with pytest.raises(BurnedInAnnotationError) as refused:
        deidentify(deid_synthetic, deid_patient, deid_uids)
    assert str(refused.value) == message


def test_in_place_works_on_the_given_data_set(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    result = deidentify(deid_synthetic, deid_patient, deid_uids, in_place=True)
    assert result.dataset is deid_synthetic
    assert str(deid_synthetic.PatientName) == PSEUDONYM


def test_free_text_outside_the_table_is_listed_in_one_flag(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    deid_synthetic.add_new(0x00181030, "LO", "keep me")  # ProtocolName is in the table: not listed
    deid_synthetic.add_new(0x00181016, "LO", "Test text one")  # SecondaryCaptureDeviceManufacturer: unlisted
    deid_synthetic.add_new(0x00189004, "CS", "RESEARCH")  # ContentQualification: unlisted code, kept
    deid_synthetic.add_new(0x00400254, "LO", "Test text two")  # PerformedProcedureStepDescription: in the table
    deid_synthetic.add_new(0x00082111, "ST", "Test text three")  # DerivationDescription: in the table
    deid_synthetic.add_new(0x00080105, "CS", "DCMR")  # MappingResource: kept
    deid_synthetic.add_new(0x00181060, "DS", "5")  # TriggerTime: number, kept
    deid_synthetic.add_new(0x00540400, "SH", "Test text four")  # ImageID: unlisted
    flags = deidentify(deid_synthetic, deid_patient, deid_uids).flags
    listed = [f for f in flags if f.startswith("free text outside the profile table replaced: ")]
    assert listed == [
        "free text outside the profile table replaced: ImageID (0054,0400), "
        "SecondaryCaptureDeviceManufacturer (0018,1016)"
    ]


def test_a_kept_private_date_time_is_shifted(deid_uids: UidMapper, deid_patient: PatientContext) -> None:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.999.999.33.1"
    ds.PatientID = "ID-ZQX-33"
    block = ds.private_block(0x0011, "TEST_CREATOR", create=True)
    block.add_new(0x01, "DT", "20200115101530")
    block.add_new(0x02, "DA", "20200115")
    out = deidentify(ds, deid_patient, deid_uids, DeidPolicy(keep_private_tags=True)).dataset
    assert str(out[0x00111001].value) == _shift("20200115101530", SHIFT)
    assert str(out[0x00111002].value) == _shift("20200115", SHIFT)


def test_file_meta_elements_removed_are_counted_one_each(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    without = deidentify(copy.deepcopy(deid_synthetic), deid_patient, deid_uids).removed
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = deid_synthetic.SOPClassUID
    meta.MediaStorageSOPInstanceUID = deid_synthetic.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationVersionName = "TEST_SENDER_1"  # removed: names the sending system
    meta.SourceApplicationEntityTitle = "TESTAE"  # removed
    meta.SendingApplicationEntityTitle = "TESTAE2"  # removed
    deid_synthetic.file_meta = meta
    result = deidentify(deid_synthetic, deid_patient, deid_uids)
    assert result.removed - without == 3
    assert sorted(e.keyword for e in result.dataset.file_meta) == [
        "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID"
    ]


def test_x_z_or_d_sequence_is_emptied_not_given_a_dummy_item(
    deid_synthetic: Dataset, deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "TEST1", "99TEST", "Test Hospital"
    deid_synthetic.InstitutionCodeSequence = Sequence([item])  # X/Z/D: Z is the first choice that fits
    out = deidentify(deid_synthetic, deid_patient, deid_uids).dataset
    assert "InstitutionCodeSequence" in out
    assert len(out.InstitutionCodeSequence) == 0


def test_a_file_read_without_a_preamble_comes_out_without_one(
    deid_uids: UidMapper, deid_patient: PatientContext
) -> None:
    buffer = io.BytesIO()
    _explicit_file(minimal_ct(34)).save_as(buffer, enforce_file_format=True)
    bare = buffer.getvalue()[128:]  # "DICM" and on: no preamble
    read = pydicom.dcmread(io.BytesIO(bare), force=True)
    assert read.preamble is None
    out = deidentify(read, deid_patient, deid_uids).dataset
    assert out.preamble is None
    assert (out.filename, out.buffer) == (None, None)
