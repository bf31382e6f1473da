"""Code-string attributes that hold names and paths are kept.

The node keeps a CS attribute the table does not list when its characters are those of a code
(upper and lower case letters, digits, space, ``_`` and ``/``), and documents that "a 16-character
upper-case code still passes". Some CS attributes are not codes from a list but names the sending
system makes up: File-set ID (0004,1130) names the exported media, Referenced File ID (0004,1500)
is a path of up to eight folder names (media exports name folders after the patient), and Content
Label (0070,0080) is typed by the user who saved a presentation. A patient's name written in the
CS repertoire passes in each. Each is planted at the top level of a real CT file and ingested.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement

from tests.node.ingest_corpus import ingest_dataset
from tests.node.leakscan import describe, scan_tree

CASES = {
    "FileSetID (0004,1130)": (0x00041130, "MRKZQX_DOE_J"),
    "ReferencedFileID (0004,1500)": (0x00041500, ["PATIENTS", "MRKZQXDOEJOHN", "IMG0001"]),
    "ContentLabel (0070,0080)": (0x00700080, "MRKZQX DOE LABEL"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_name_in_a_code_string_attribute_does_not_reach_the_store(
    name: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    tag, value = CASES[name]
    marker = next(v for v in ([value] if isinstance(value, str) else value) if v.startswith("MRKZQX"))
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW2-CS-1"
    ds.add(DataElement(tag, "CS", value))
    hits = scan_tree(ingest_dataset(make_node(role=False), ds, tmp_path / "in"), [marker])
    assert hits == [], f"{name} kept {marker!r}:\n{describe(hits)}"
