"""A reader warning about a deflated DICOM file echoes a value onto the terminal.

``node.ingest_work.process_file`` turns what pydicom warns while reading a file into value-free
notes with ``value_free(message, content)``: words of the message that occur in the file's bytes
are redacted. In a Deflated Explicit VR Little Endian file every value of the data set sits inside
a deflate stream, so no value occurs in the bytes and none is redacted. (Quarantine reasons compare
with ``decoded_view``, which inflates the data set; the notes do not.)

pydicom warns ``Unknown encoding 'VALUE' - using default encoding instead`` when Specific Character
Set holds an unknown term; a value with an apostrophe (a name such as O'Brien typed into the wrong
field) ends the quoted literal early, so the rest of the value is compared with the bytes, which do
not hold it. The same file stored uncompressed is redacted correctly (control case).
"""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from tests.node.ingest_corpus import run_ingest
from tests.node.leakscan import describe, scan_tree

VALUE = "MRK'OBRIENZQX PATIENT"  # synthetic; an apostrophe as in a real surname
WORDS = ("OBRIENZQX", "PATIENT")  # what is left after the quoted literal 'MRK'


def _write(path: Path, syntax: pydicom.uid.UID) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW2-DEFL-1"
    ds.add(DataElement(0x00080005, "CS", VALUE))  # SpecificCharacterSet
    ds.file_meta.TransferSyntaxUID = syntax
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    path.write_bytes(buffer.getvalue())


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian],
                         ids=["plain (control)", "deflated"])
def test_a_reader_warning_names_no_value_of_the_file_on_the_terminal(
    syntax: pydicom.uid.UID, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _write(folder / "image.dcm", syntax)
    node = make_node(role=False)
    result = run_ingest(node.dir, str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "reader warning" in result.stdout  # the warning was caught and reported as a note
    terminal = result.stdout + result.stderr
    echoed = [word for word in WORDS if word in terminal]
    hits = scan_tree(node.dir, WORDS)
    assert (echoed, hits) == ([], []), f"on the terminal: {echoed}\n{describe(hits)}\n{result.stdout}"
