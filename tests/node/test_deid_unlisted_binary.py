"""Unlisted public attributes whose standard VR is binary are kept as they are.

The node replaces an unlisted public attribute when its VR can hold free text (AE, LO, ..., UN) and
keeps it otherwise. OB and OW can hold anything, and several attributes of that VR are documents,
keys or another system's copy of the identifiers: a Record Key is a key into a database, an HPGL
document is a drawing with labels, Encrypted Content holds the original attributes encrypted for a
re-identifying recipient (PS3.15 E.1.2), a Signature signs them, an ICC profile carries free text
descriptions. The table of PS3.15 does not list them, so the standard keeps them; the node's own
rule for unreviewed attributes ("a privacy product should not keep what nobody has reviewed",
node/deid_profile.py) stops at free-text VRs. Each is planted at the top level of a real CT file
with a readable marker and ingested; the whole node directory is scanned.

(Planting every unlisted OB/OW/OF/OD/OL/OV attribute of pydicom's dictionary this way, 63 of 63
survived; the ones below are those whose meaning is a document, a key or identifying content.)
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement

from tests.node.ingest_corpus import ingest_dataset
from tests.node.leakscan import describe, scan_tree

PLANTS = {
    "RecordKey (0008,041B)": (0x0008041B, "MRKZQX-RECORDKEY-1"),
    "PriorRecordKey (0008,041C)": (0x0008041C, "MRKZQX-PRIORKEY-02"),
    "HPGLDocument (0068,6300)": (0x00686300, "MRKZQX-HPGLDOC-003"),
    "EncryptedContent (0400,0520)": (0x04000520, "MRKZQX-ENCRYPTED-4"),
    "Signature (0400,0120)": (0x04000120, "MRKZQX-SIGNATURE-5"),
    "ICCProfile (0028,2000)": (0x00282000, "MRKZQX-ICCDESC-006"),
}


@pytest.mark.parametrize("name", sorted(PLANTS))
def test_an_unlisted_binary_attribute_does_not_carry_text_into_the_store(
    name: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    tag, marker = PLANTS[name]
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW2-OB-1"
    ds.add(DataElement(tag, "OB", marker.encode()))  # OB is the standard's VR of each
    hits = scan_tree(ingest_dataset(make_node(role=False), ds, tmp_path / "in"), [marker])
    assert hits == [], f"{name} kept {marker!r}:\n{describe(hits)}"


# Implicit VR files carry no VR: pydicom then gives these attributes their dictionary VR, "OB or OW",
# unresolved (only pixel, overlay and waveform data are resolved from other attributes).
AMBIGUOUS = {"DarkCurrentCounts (0014,3050)": 0x00143050, "AirCounts (0014,3070)": 0x00143070}


@pytest.mark.parametrize("name", sorted(AMBIGUOUS))
def test_an_unlisted_binary_attribute_read_without_its_vr_is_removed(name: str) -> None:
    import io

    from node.deid import PatientContext, UidMapper, deidentify
    from tests.node.minimal_ct import implicit_vr_file

    tag, marker = AMBIGUOUS[name], b"MRKZQX-AMBIGUOUS-7"
    read = implicit_vr_file(7, DataElement(tag, "OB", marker + b"\x00\x00"))
    assert read[tag].VR == "OB or OW", "the case this test is about: a VR pydicom could not resolve"
    result = deidentify(read, PatientContext("MTP-TEST000007", 17), UidMapper(b"test-secret-not-for-production-0007"))
    out = io.BytesIO()
    result.dataset.save_as(out, enforce_file_format=True)
    assert marker not in out.getvalue()
    assert tag not in result.dataset
    assert f"binary content outside the profile table removed: {name}" in result.flags
