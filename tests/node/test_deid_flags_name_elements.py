"""The flags name what the de-identification removed or emptied, so a reviewer can find it.

A binary attribute the table does not list is removed and named; an attribute of a newer edition
than pydicom's dictionary (no keyword) is named "attribute" with its tag, never "private attribute".
"""

from __future__ import annotations

import pytest
from pydicom.dataelem import DataElement

from node.deid import PatientContext, UidMapper, deidentify
from tests.node.minimal_ct import minimal_ct

PATIENT = PatientContext("MTP-FLAGS0001", 30)
UIDS = UidMapper(b"test-secret-not-for-production-0043")



def test_unlisted_binary_attributes_are_removed_and_named_in_one_flag() -> None:
    ds = minimal_ct(43)
    ds.add(DataElement(0x0008041B, "OB", b"MRKZQX-RECORDKEY-1"))  # RecordKey
    ds.add(DataElement(0x00686300, "OB", b"MRKZQX-HPGLDOC-003"))  # HPGLDocument
    result = deidentify(ds, PATIENT, UIDS)
    assert 0x0008041B not in result.dataset
    assert 0x00686300 not in result.dataset
    assert (
        "binary content outside the profile table removed: HPGLDocument (0068,6300), RecordKey (0008,041B)"
        in result.flags
    )


@pytest.mark.filterwarnings("ignore:Invalid value for VR DT")
def test_a_public_attribute_without_a_keyword_is_named_attribute_with_its_tag() -> None:
    ds = minimal_ct(43)
    # Effective Start DateTime (0040,A034): in the standard's table, not in pydicom's dictionary.
    # Month 13 has the characters of a DT, so only the date shift finds it is not a date.
    ds.add_new(0x0040A034, "DT", "20201345101500")
    result = deidentify(ds, PATIENT, UIDS)
    assert "attribute (0040,A034): not a valid DT value, so it could not be shifted; emptied" in result.flags
    assert result.dataset[0x0040A034].value in ("", None)
