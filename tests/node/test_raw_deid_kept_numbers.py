"""Review 2 of issue 9: acquisition header numbers the allow-list keeps are copied bit for bit.

After the first review the node zeroes the vendor-defined acquisition fields (user_int, user_float,
idx.user, measurement_uid) because "an 8-bit array is text in all but name". The fields it keeps are
copied with their bits as they were, although their meaning leaves room for text:

- ``channel_mask`` is 1024 bits, one per receiver channel; a file with 2 channels has 1022 bits that
  mean nothing, room for 127 bytes per acquisition;
- ``read_dir`` is a unit direction vector and ``patient_table_position`` a position in mm; twelve
  bytes of text make three finite float32 values, which are neither.

Each case plants a 16- or 12-byte marker in the first acquisition of a valid 2-channel file,
ingests it through the real ``Ingestor`` and scans the node directory (``tests/node/leakscan.py``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from node.ingest import Ingestor
from tests.node.ingest_corpus import write_kspace
from tests.node.leakscan import describe, scan_tree

# field -> (marker, where in the field's values, the field's type)
CASES = {
    "channel_mask": ("MRKZQXCHANMASK16", slice(2, 4), "<u8"),  # bits 128-255: channels a 2-channel coil lacks
    "read_dir": ("MRKZQXREADD3", slice(None), "<f4"),
    "patient_table_position": ("MRKZQXTABLE4", slice(None), "<f4"),
}


@pytest.mark.parametrize("field", sorted(CASES))
def test_text_in_a_kept_acquisition_number_does_not_reach_the_store(
    field: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    marker, where, dtype = CASES[field]
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "mr.h5"
    write_kspace(path, "REVIEW2-ACQ-1")
    with h5py.File(path, "r+") as f:
        data = f["dataset/data"][()]
        head = data["head"]
        head[field][0][where] = np.frombuffer(marker.encode(), dtype)
        data["head"] = head
        f["dataset/data"][...] = data
    assert marker.encode() in path.read_bytes()
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert (report.quarantined, len(report.ingested)) == ([], 1), report.quarantined
    hits = scan_tree(node.dir, [marker])
    assert hits == [], f"acquisition {field} carried {marker!r} into the node:\n{describe(hits)}"
