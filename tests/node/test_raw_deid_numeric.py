"""Text hidden in ISMRMRD fields the allow-list keeps as numbers.

The allow-list zeroes ``user_int``, ``user_float`` and ``measurement_uid`` because "the standard
leaves their meaning to the vendor, so they could hold a date or an id". The encoding counter
``idx.user[8]`` is exactly such a vendor-defined field (ISMRMRD: "free user parameters"), yet the
rule ``head/idx/*`` keeps it. ``coil_images`` is kept with whatever integer type the source used,
so an 8-bit array is text in all but name. Each case plants one marker, ingests through the real
``Ingestor`` and scans the whole node directory with ``tests/node/leakscan.py``.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from node.ingest import Ingestor
from tests.node.ingest_corpus import write_kspace
from tests.node.leakscan import describe, scan_tree

MARKER16 = "MRK-IDXUSER-0016"  # 16 bytes: fits idx.user (8 x uint16)


def _set_head(path: Path, field: str, raw: bytes, dtype: str, index: int = 0) -> None:
    with h5py.File(path, "r+") as f:
        data = f["dataset/data"][()]
        head = data["head"]
        target = head["idx"]["user"] if field == "idx/user" else head[field]
        target[index] = np.frombuffer(raw, dtype=dtype)
        data["head"] = head
        f["dataset/data"][...] = data


def _ingest_and_scan(make_node, folder: Path, marker: str) -> list:  # type: ignore[no-untyped-def]
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert report.quarantined == [], report.quarantined
    assert len(report.ingested) == 1
    return scan_tree(node.dir, [marker])


@pytest.mark.parametrize(
    ("field", "marker", "dtype"),
    [
        ("idx/user", MARKER16, "<u2"),  # vendor-defined counters, the same class as user_int
    ],
)
def test_text_in_vendor_or_free_numeric_acquisition_fields_does_not_reach_the_store(
    field: str, marker: str, dtype: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "mr.h5"
    write_kspace(path, "REVIEW-PATIENT-1")
    _set_head(path, field, marker.encode(), dtype)
    hits = _ingest_and_scan(make_node, folder, marker)
    assert hits == [], f"{field} carried {marker!r} into the node:\n{describe(hits)}"


def test_text_in_an_integer_coil_images_array_does_not_reach_the_store(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    path = folder / "mr.h5"
    write_kspace(path, "REVIEW-PATIENT-1")
    text = ("MRK-COILIMG-0042 " * 8).encode()
    with h5py.File(path, "r+") as f:
        f["dataset"].create_dataset("coil_images", data=np.frombuffer(text, dtype="u1").reshape(1, 1, 8, 17))
    hits = _ingest_and_scan(make_node, folder, "MRK-COILIMG-0042")
    assert hits == [], f"an 8-bit coil_images array carried text into the node:\n{describe(hits)}"
