"""Review 2 of issue 9: free text the node's allow-list keeps holds any name, in any kept sequence.

``FREE_TEXT_KEPT`` (node/deid_profile.py) keeps a few free-text attributes everywhere they occur,
because the tasks read them. Two of them are free text by nature and can be written anywhere:

- Code Meaning (0008,0104), LO, in every code sequence the table does not remove; an unlisted
  sequence such as Anatomic Region Sequence (0008,2218) is kept with its items, so a meaning typed
  by a person ("head of <patient>") is stored as it was;
- De-identification Method (0012,0063), LO: an earlier tool's description of what it did is kept
  next to the node's own, and such notes name the operator or what was removed.

This is a documented choice, not an oversight; the test records that, as it stands, a name in
either survives ingest, which issue 9 ("free text is dropped", "no planted value survives") rules
out for raw files. The lead decides whether the DICOM allow-list keeps them.
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from node.ingest import Ingestor
from tests.node.leakscan import describe, scan_tree

MEANING = "MRKZQX head of DOE JOHN"
METHOD = "MRKZQX removed by DR ROE"


def test_names_in_code_meaning_and_an_earlier_deidentification_method_do_not_reach_the_store(
    make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW2-FT-1"
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "T-D1100", "SRT", MEANING
    ds.AnatomicRegionSequence = Sequence([item])
    ds.DeidentificationMethod = [METHOD]
    folder = tmp_path / "in"
    folder.mkdir()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    (folder / "image.dcm").write_bytes(buffer.getvalue())
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert (report.quarantined, len(report.ingested)) == ([], 1)
    hits = scan_tree(node.dir, [MEANING, METHOD])
    assert hits == [], describe(hits)
