"""XML character references carry a header value past the reason's redaction.

A quarantine reason is made value-free by ``node.redact.value_free``, which drops every word of the
reader's message that occurs in what can be decoded from the file (``decoded_view``: the bytes,
inflated streams, HDF5 names, attributes and text). XML itself is a decoding step that view does not
apply: ``&#77;&#82;...`` in the header is ``MR...`` to the XML parser. The ISMRMRD reader quotes the
parser's message (``Unknown property {...}ismrmrdHeader:{NAMESPACE}foo``, ``Failed to convert value
`...```), so a namespace URI or a value written as character references reaches the terminal, the
reason file and the catalog's quarantine row.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import h5py
import pytest

from tests.node.ingest_corpus import run_ingest, write_kspace
from tests.node.leakscan import describe, scan_tree


def _refs(text: str) -> str:
    return "".join(f"&#{ord(ch)};" for ch in text)


CASES = {
    # an element in a namespace whose URI is the marker, spelled as character references
    "namespace URI": ("MRKZQXNSURIPATIENT", '<q:note xmlns:q="{refs}"/>'),
    # a value on two lines: the newline ends the reader's backtick quote, the rest is compared word by word
    "element value": ("MRKZQXVALUEPATIENT", "<ns0:version>1\n{refs}</ns0:version>"),
}


def _planted(path: Path, marker: str, template: str) -> None:
    write_kspace(path, "REVIEW2-XML-1")
    with h5py.File(path, "r+") as f:
        xml = f["dataset/xml"][0].decode()
        insert = template.format(refs=_refs(marker))
        xml = xml.replace("<ns0:subjectInformation>", insert + "<ns0:subjectInformation>", 1)
        dtype = f["dataset/xml"].dtype
        del f["dataset/xml"]
        f["dataset"].create_dataset("xml", data=[xml], dtype=dtype)


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_header_value_written_as_character_references_stays_out_of_reasons(
    case: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    marker, template = CASES[case]
    folder = tmp_path / "in"
    folder.mkdir()
    _planted(folder / "mr.h5", marker, template)
    assert marker.encode() not in (folder / "mr.h5").read_bytes()  # only as character references
    node = make_node(role=False)
    result = run_ingest(node.dir, str(folder))
    assert result.returncode == 1, result.stdout + result.stderr  # the one file is quarantined
    with sqlite3.connect(node.dir / "catalog.sqlite") as db:
        reasons = [row[0] for row in db.execute("SELECT reason FROM quarantine")]
    assert len(reasons) == 1
    # The quarantined copy is the original and holds the marker as references; everything else must not.
    hits = [h for h in scan_tree(node.dir, [marker])
            if not (h.file.startswith("quarantine/") and not h.file.endswith(".reason.txt"))]
    on_terminal = marker in result.stdout + result.stderr
    assert (on_terminal, marker in reasons[0], hits) == (False, False, []), (
        f"reason: {reasons[0]}\n{describe(hits)}"
    )
