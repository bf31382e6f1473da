"""A quarantine reason must name no value of the file.

``node.redact.value_free`` removes quoted literals and every word of a library's message that
also occurs in the file's bytes ("a value can only come from there"). A value stored compressed
does not occur in the file's bytes: an ISMRMRD header written as a gzip-compressed fixed-length
string dataset (valid HDF5; ``raw_data.read_ismrmrd`` reads it) whose unknown element is named by
a marker makes the reader say ``Unknown property {...}ismrmrdHeader:{...}MARKER``, unquoted, and
the word is not in the raw bytes. The marker must then appear nowhere outside the quarantined copy
itself: not on the terminal, not in the reason file, not in the catalog.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from tests.node.ingest_corpus import run_ingest, write_kspace
from tests.node.leakscan import describe, scan_tree

MARKER = "MRKZQXSMITHJOHN"


def _compressed_header_file(path: Path) -> None:
    write_kspace(path, "REVIEW-GZ-1")
    with h5py.File(path, "r+") as f:
        xml = f["dataset/xml"][0]
        xml = xml.replace(b"<ns0:subjectInformation>",
                          f"<ns0:{MARKER}>1</ns0:{MARKER}><ns0:subjectInformation>".encode(), 1)
        del f["dataset/xml"]
        f["dataset"].create_dataset("xml", data=np.array([xml], dtype=f"S{len(xml)}"), chunks=(1,),
                                    compression="gzip")


def test_a_compressed_value_named_by_the_reader_stays_out_of_reasons_catalog_and_terminal(
    make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    _compressed_header_file(folder / "mr.h5")
    assert MARKER.encode() not in (folder / "mr.h5").read_bytes()  # only inside the deflate stream
    node = make_node(role=False)
    result = run_ingest(node.dir, str(folder))
    assert result.returncode == 1, result.stdout + result.stderr  # nothing ingested: the one file quarantined
    hits = [h for h in scan_tree(node.dir, [MARKER])
            if not (h.file.startswith("quarantine/") and not h.file.endswith(".reason.txt"))]
    on_terminal = MARKER in result.stdout + result.stderr
    assert (hits, on_terminal) == ([], False), f"terminal: {on_terminal}\n{describe(hits)}\n{result.stdout}"
