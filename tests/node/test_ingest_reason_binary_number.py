"""A number stored in binary is echoed by the reader into the quarantine reason.

``node.redact.value_free`` treats a run of four or more digits as a possible identifier and removes
it when it occurs in what can be decoded from the file. ``decoded_view`` adds text only ("numbers
left out"), and an HDF5 integer attribute is stored as binary, so the digits the reader prints
never occur in the view. The sinogram reader says ``/geometry n_views is N but ... holds 24 angles``
and ``/sinogram has shape ... = (24, N)``: a date of birth or a record number written into a
geometry attribute lands in the reason file, the catalog and on the terminal.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.node.ingest_corpus import run_ingest, write_sinogram
from tests.node.leakscan import describe, scan_tree

CASES = {"n_views": 19700101, "n_detectors": 31415926}  # a birth date, a record number


@pytest.mark.parametrize("key", sorted(CASES))
def test_a_binary_number_named_by_the_reader_stays_out_of_reasons(
    key: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    number = str(CASES[key])
    folder = tmp_path / "in"
    folder.mkdir()
    write_sinogram(folder / "ct.h5", "REVIEW2-NUM-1")
    with h5py.File(folder / "ct.h5", "r+") as f:
        f["geometry"].attrs[key] = np.int64(CASES[key])
    assert number.encode() not in (folder / "ct.h5").read_bytes()  # only in binary
    node = make_node(role=False)
    result = run_ingest(node.dir, str(folder))
    assert result.returncode == 1, result.stdout + result.stderr  # quarantined: the geometry does not fit
    with sqlite3.connect(node.dir / "catalog.sqlite") as db:
        (reason,) = [row[0] for row in db.execute("SELECT reason FROM quarantine")]
    hits = [h for h in scan_tree(node.dir, [number])
            if not (h.file.startswith("quarantine/") and not h.file.endswith(".reason.txt"))]
    on_terminal = number in result.stdout + result.stderr
    assert (on_terminal, number in reason, hits) == (False, False, []), f"reason: {reason}\n{describe(hits)}"
