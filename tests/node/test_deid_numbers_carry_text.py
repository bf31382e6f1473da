"""Binary numbers of kept DICOM attributes carry text into the store bit for bit.

An attribute of VR US, FD and the like is kept without being looked at (``_kept_unread``), so its
bytes are written back as they were read, whatever their number or meaning:

- Smallest Image Pixel Value (0028,0106) is one US value (VM 1); sixteen bytes make eight;
- Diffusion Gradient Orientation (0018,9089) is a unit vector of three FD values (VM 3); 24 bytes of
  text make three finite doubles of the right count, none near length 1.

The same class as the ISMRMRD acquisition numbers (``test_ismrmrd_kept_numbers_carry_text.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataelem import DataElement

from node.ingest import Ingestor
from tests.node.leakscan import describe, scan_tree

CASES = {
    "SmallestImagePixelValue (0028,0106) US, eight values where VM is 1": (0x00280106, "US", "<u2",
                                                                          "MRKZQX-USTEXT-01"),
    "DiffusionGradientOrientation (0018,9089) FD, VM 3": (0x00189089, "FD", "<f8", "MRKZQX-FDTEXT-0212345678"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_text_packed_into_a_kept_number_does_not_reach_the_store(
    name: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    tag, vr, dtype, marker = CASES[name]
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW2-NUM-1"
    ds.add(DataElement(tag, vr, np.frombuffer(marker.encode(), dtype).tolist()))
    folder = tmp_path / "in"
    folder.mkdir()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert marker.encode() in buffer.getvalue()
    (folder / "image.dcm").write_bytes(buffer.getvalue())
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert (report.quarantined, len(report.ingested)) == ([], 1)
    hits = scan_tree(node.dir, [marker])
    assert hits == [], f"{name} kept {marker!r}:\n{describe(hits)}"
