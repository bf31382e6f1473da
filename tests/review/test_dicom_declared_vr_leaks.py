"""Review of issue 9 sections 1, 2 and 6: DICOM values that bypass the profile table.

``node.deid._Cleaner._kept_unread`` keeps an element undecoded when the file declares its VR as
TM (times of day are kept under the modified dates option), whatever its tag and whatever the table
says for that tag; it also keeps an attribute the table does not list when the declared VR is not
one of the free-text VRs (e.g. OB or CS). An explicit-VR file says what it likes about a VR, so a
patient's other names, comments or an institution written with VR "TM" are stored as they are.
The file meta group keeps the presentation addresses of the sending and receiving systems
(0002,0026-0028, host names or IP addresses, while the AE titles beside them are removed), the
implementation version name and the RTV source identifier.

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
    ("ExtendedCodeMeaning (0008,0106, unlisted LO) declared OB", 0x00080106, "OB", b"MRK-UNLOB-04"),
    ("ExtendedCodeValue (0008,0105, unlisted LO) declared CS", 0x00080105, "CS", "MRK-UNLCS-05"),
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
