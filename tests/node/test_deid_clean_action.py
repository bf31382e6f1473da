"""C (clean) on anything but a date: the node cannot prove free text clean, so it writes the dummy.

The basic profile's column of PS3.15 Table E.1-1 has no C row today (C belongs to the options the
node does not offer, such as Clean Descriptors), but the table is regenerated from each new
edition; a C row must then neither keep the text nor stop the run. The module's docstring states
the rule: C on dates and times is the date option, C on any other VR writes the D dummy, and a
sequence under C is kept with every item cleaned. These tests give the engine a table with C rows.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage

import node.deid
from node.deid import PatientContext, UidMapper, deidentify
from node.deid_profile import RULES_BY_TAG, ProfileRule
from tests.node.minimal_ct import minimal_ct

SECRET = b"test-secret-not-for-production-0044"
PATIENT = PatientContext("MTP-CLEAN0001", 5)
STUDY_DESCRIPTION, CONTENT_SEQUENCE = 0x00081030, 0x0040A730


@pytest.fixture
def table_with_c_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = dict(RULES_BY_TAG)
    rules[STUDY_DESCRIPTION] = ProfileRule(STUDY_DESCRIPTION, "StudyDescription", "C")
    rules[CONTENT_SEQUENCE] = ProfileRule(CONTENT_SEQUENCE, "ContentSequence", "C")
    monkeypatch.setattr(node.deid, "RULES_BY_TAG", rules)



@pytest.mark.usefixtures("table_with_c_rows")
def test_c_on_free_text_writes_the_dummy_and_says_so() -> None:
    ds = minimal_ct(44)
    ds.StudyDescription = "Head CT of MARK ZQX"
    result = deidentify(ds, PATIENT, UidMapper(SECRET))
    assert result.dataset.StudyDescription == "ANONYMIZED"  # the node's documented dummy text
    assert "StudyDescription (0008,1030): free text replaced by a dummy (cleaning not available)" in result.flags


@pytest.mark.usefixtures("table_with_c_rows")
def test_c_on_a_sequence_keeps_its_items_and_cleans_each() -> None:
    ds = minimal_ct(44)
    item = Dataset()
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = "1.2.999.999.44.7"
    item.PatientComments = "MARK ZQX comment"  # X in the table
    ds.ContentSequence = Sequence([item])
    result = deidentify(ds, PATIENT, UidMapper(SECRET))
    (out,) = result.dataset.ContentSequence
    digest = hmac.new(SECRET, b"1.2.999.999.44.7", hashlib.sha256).digest()
    assert out.ReferencedSOPInstanceUID == f"2.25.{int.from_bytes(digest[:16], 'big')}"
    assert out.ReferencedSOPClassUID == CTImageStorage
    assert "PatientComments" not in out
    assert not [f for f in result.flags if "ContentSequence" in f]
