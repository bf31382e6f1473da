"""DICOM values that bypass the profile table by what the file declares (issue 9, sections 1, 2 and 6).

An explicit-VR file says what it likes about a VR, and the rules depend on it: times of day are
kept, unlisted attributes are kept unless their VR holds free text. Before the fix a name, a
comment or an institution declared as TM, or an unlisted attribute declared as OB, was stored as
it was, and so was text written into a kept code string or time. The file meta group kept the
presentation addresses of the sending and receiving systems (0002,0026-0028), the implementation
version name and the RTV source identifier. Now each element is judged by the standard's VR
(declared otherwise: removed), a code, number, UID, age, date or time holding characters its VR
cannot have is removed, and the file meta keeps only what a reader needs.

Each planted value is ingested with ``python -m node.cli ingest`` and looked for in every byte the
node wrote (leakscan) and on the terminal.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.node.ingest_corpus import run_ingest
from tests.node.leakscan import describe, scan_tree

# (where, tag, declared VR, value): each value is distinct so a hit names its place.
DATASET_PLANTS = [
    ("InstitutionName (0008,0080) declared TM", 0x00080080, "TM", "MRK-TMINST-01"),
    ("OtherPatientNames (0010,1001) declared TM", 0x00101001, "TM", "MRK-TMOPN-02"),
    ("PatientComments (0010,4000) declared TM", 0x00104000, "TM", "MRK-TMCOMM-03"),
    ("ContextGroupVersion (0008,0106, DT: kept) declared OB", 0x00080106, "OB", b"MRK-UNLOB-04"),
    ("MappingResource (0008,0105, unlisted CS) holding text", 0x00080105, "CS", "MRK-UNLCS-05"),
    ("StudyTime (0008,0030, TM: kept) holding text", 0x00080030, "TM", "MRK TMTEXT 12"),
    ("Modality (0008,0060, CS: kept) holding text", 0x00080060, "CS", "MRK.MODALITY.13"),
    ("a public attribute the standard does not define (0018,FFF0)", 0x0018FFF0, "LO",
     "MRK-UNKNOWN-15"),
]
META_PLANTS = [
    ("SourcePresentationAddress (0002,0026)", 0x00020026, "UR", "https://MRK-SRCADDR-06.example/"),
    ("SendingPresentationAddress (0002,0027)", 0x00020027, "UR", "https://MRK-SNDADDR-07.example/"),
    ("ReceivingPresentationAddress (0002,0028)", 0x00020028, "UR", "https://MRK-RCVADDR-08.example/"),
    ("ImplementationVersionName (0002,0013)", 0x00020013, "SH", "MRK-IVN-09"),
    ("RTVSourceIdentifier (0002,0035)", 0x00020035, "OB", b"MRK-RTVSRC-10"),
]
NESTED = ("PatientName in a ReferencedImageSequence item, declared TM", "MRK-TMNEST-11")


def _marker(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    return text.removeprefix("https://").removesuffix(".example/")


def _planted_file(path: Path, plants: list[tuple[str, int, str, str | bytes]], meta: bool) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # explicit VR little endian
    ds.PatientID = "REVIEW-DCM-1"
    target = ds.file_meta if meta else ds
    for _, tag, vr, value in plants:
        target.add(DataElement(tag, vr, value))
    if not meta:
        item = Dataset()
        item.ReferencedSOPClassUID = ds.SOPClassUID
        item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.10.9999.77.1"
        item.add(DataElement(0x00100010, "TM", NESTED[1]))
        ds.ReferencedImageSequence = Sequence([item])
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("meta", [False, True], ids=["data-set", "file-meta"])
def test_values_with_a_declared_vr_or_in_the_file_meta_do_not_survive_ingest(
    meta: bool, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    plants = META_PLANTS if meta else DATASET_PLANTS
    folder = tmp_path / "in"
    folder.mkdir()
    _planted_file(folder / "planted.dcm", plants, meta)
    places = {_marker(value): where for where, _, _, value in plants}
    if not meta:
        places[NESTED[1]] = NESTED[0]
    for marker in places:
        assert marker.encode() in (folder / "planted.dcm").read_bytes()
    node = make_node(role=False)
    result = run_ingest(node.dir, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 ingested" in result.stdout or "ingested: 1" in result.stdout or "ingested 1" in result.stdout, (
        result.stdout)
    hits = scan_tree(node.dir, places)
    on_terminal = [m for m in places if m in result.stdout or m in result.stderr]
    survivors = sorted({h.marker for h in hits} | set(on_terminal))
    assert survivors == [], (
        "planted values survive:\n" + "\n".join(f"  {places[m]}: {m}" for m in survivors)
        + "\n" + describe(hits) + ("\non the terminal: " + ", ".join(on_terminal) if on_terminal else "")
    )


def _assert_gone(result, tag: int, value: str | bytes) -> None:  # type: ignore[no-untyped-def]
    """Neither the element nor its marker is in the de-identified data set as written."""
    written = io.BytesIO()
    result.dataset.save_as(written, enforce_file_format=True)
    assert _marker(value).encode() not in written.getvalue()
    assert tag not in result.dataset


def _read_back(plants: list[tuple[str, int, str, str | bytes]]) -> pydicom.Dataset:
    """A real CT file carrying ``plants`` with the VRs they declare, read back as the node reads a file."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))  # explicit VR little endian
    ds.PatientID = "REVIEW-DCM-2"
    for _, tag, vr, value in plants:
        ds.add(DataElement(tag, vr, value))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the plants are invalid on purpose
@pytest.mark.parametrize("plant", DATASET_PLANTS, ids=[p[0] for p in DATASET_PLANTS])
def test_each_declared_vr_plant_is_removed_in_process_with_its_reason(
        plant: tuple[str, int, str, str | bytes]) -> None:
    # The same plants, de-identified in this process: the CLI ingest above runs in a child process.
    from node.deid import PatientContext, UidMapper, deidentify

    _, tag, _, value = plant
    result = deidentify(_read_back([plant]), PatientContext("MTP-TEST000012", 17),
                        UidMapper(b"test-secret-not-for-production-0012"))
    _assert_gone(result, tag, value)


def test_a_kept_attribute_declared_with_another_vr_is_removed_naming_both_vrs() -> None:
    # ContextGroupVersion (0008,0106) is DT and kept by the table (K): only the declared VR gives it away.
    from node.deid import PatientContext, UidMapper, deidentify

    plant = ("ContextGroupVersion declared OB", 0x00080106, "OB", b"MRK-UNLOB-16")
    result = deidentify(_read_back([plant]), PatientContext("MTP-TEST000013", 17),
                        UidMapper(b"test-secret-not-for-production-0013"))
    assert 0x00080106 not in result.dataset
    assert "ContextGroupVersion (0008,0106): declared with VR OB, the standard defines DT; removed" in result.flags


def test_an_attribute_the_standard_does_not_define_is_removed_saying_so() -> None:
    from node.deid import PatientContext, UidMapper, deidentify

    plant = ("undefined", 0x0018FFF0, "LO", "MRK-UNKNOWN-17")
    result = deidentify(_read_back([plant]), PatientContext("MTP-TEST000014", 17),
                        UidMapper(b"test-secret-not-for-production-0014"))
    assert 0x0018FFF0 not in result.dataset
    assert "attribute (0018,FFF0): not defined by the standard, removed" in result.flags


@pytest.mark.parametrize("tag", [0x00000000, 0x00080000, 0x00100000], ids=["command group length", "group length 0008",
                                                                          "group length 0010"])
def test_group_lengths_are_removed_without_a_declared_vr_flag(tag: int) -> None:
    # Group lengths (element 0000) and command elements (group 0000) go by their rule, unflagged.
    from node.deid import PatientContext, UidMapper, deidentify

    ds = _read_back([])
    ds.add(DataElement(tag, "UL", 1234))
    result = deidentify(ds, PatientContext("MTP-TEST000015", 17), UidMapper(b"test-secret-not-for-production-0015"))
    assert tag not in result.dataset
    assert not any("declared with VR" in f or "not defined by the standard" in f for f in result.flags)


IMPLICIT_PLANTS = [p for p in DATASET_PLANTS if p[1] in (0x00080105, 0x00080030, 0x00080060)]


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the plants are invalid on purpose
@pytest.mark.parametrize("plant", IMPLICIT_PLANTS, ids=[p[0] for p in IMPLICIT_PLANTS])
def test_text_in_a_kept_code_or_time_of_an_implicit_vr_file_is_removed(
        plant: tuple[str, int, str, str | bytes]) -> None:
    # Without a VR in the file the standard's VR (CS, TM) is the one the value is checked by.
    from pydicom.uid import ImplicitVRLittleEndian

    from node.deid import PatientContext, UidMapper, deidentify

    _, tag, _, value = plant
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW-DCM-3"
    ds.add(DataElement(tag, "OB", value.encode() if isinstance(value, str) else value))  # only bytes are written
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=True)
    read = pydicom.dcmread(io.BytesIO(buffer.getvalue()))
    assert read.get_item(tag).VR is None, "the case this test is about: no VR in the file"
    result = deidentify(read, PatientContext("MTP-TEST000016", 17), UidMapper(b"test-secret-not-for-production-0016"))
    _assert_gone(result, tag, value)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the plants are invalid on purpose
@pytest.mark.parametrize("plant", IMPLICIT_PLANTS, ids=[p[0] for p in IMPLICIT_PLANTS])
def test_text_in_a_kept_code_or_time_declared_un_is_removed(plant: tuple[str, int, str, str | bytes]) -> None:
    # UN: the sender did not know the VR; the value is judged by the standard's.
    from node.deid import PatientContext, UidMapper, deidentify

    _, tag, _, value = plant
    raw = value.encode() if isinstance(value, str) else value
    result = deidentify(_read_back([("UN", tag, "UN", raw)]), PatientContext("MTP-TEST000017", 17),
                        UidMapper(b"test-secret-not-for-production-0017"))
    _assert_gone(result, tag, value)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")  # the plants are invalid on purpose
@pytest.mark.parametrize("plant", IMPLICIT_PLANTS, ids=[p[0] for p in IMPLICIT_PLANTS])
def test_text_in_a_kept_code_or_time_already_read_by_the_caller_is_removed(
        plant: tuple[str, int, str, str | bytes]) -> None:
    # A caller that looked at the value first (the ingest reads Modality) hands over a decoded element.
    from node.deid import PatientContext, UidMapper, deidentify

    _, tag, _, value = plant
    ds = _read_back([plant])
    assert ds[tag].value  # decoded now
    result = deidentify(ds, PatientContext("MTP-TEST000018", 17), UidMapper(b"test-secret-not-for-production-0018"))
    _assert_gone(result, tag, value)


def test_a_pixel_value_whose_vr_is_left_ambiguous_is_still_counted() -> None:
    # A data set built or converted by a caller can hold the dictionary's "US or SS" as the element's VR.
    from node.deid import PatientContext, UidMapper, deidentify

    ds = _read_back([])
    ds.add(DataElement(0x00280106, "US or SS", list(range(1, 9))))
    result = deidentify(ds, PatientContext("MTP-TEST000019", 17), UidMapper(b"test-secret-not-for-production-0019"))
    assert 0x00280106 not in result.dataset
    assert "SmallestImagePixelValue (0028,0106): 8 values where the standard allows 1; removed" in result.flags
