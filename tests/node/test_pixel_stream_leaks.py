"""Issue 9 (found by review 2): text inside a pixel data stream must not reach the store.

Encapsulated pixel data are kept byte for byte. A JPEG stream has a comment segment (COM, FFFE)
and application segments a writer may fill with anything; a JPEG 2000 codestream has a comment
marker (COM, FF64); and bytes after a stream's end-of-image marker are ignored by every decoder.
Each can hold a name that no decoder shows and no attribute rule sees. The pixels decode the same
with or without them, so the node drops them (node/pixel_stream.py). Public test files from pydicom
are rewritten with one marker each and ingested; the stored file is searched for the marker.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from sqlalchemy import select

from node.catalog import Record
from node.ingest import Ingestor
from tests.node.ingest_corpus import ingest_dataset
from tests.node.leakscan import describe, scan_tree


def _jpeg_comment(marker: bytes) -> Callable[[bytes], bytes]:
    def edit(frame: bytes) -> bytes:
        assert frame[:2] == b"\xff\xd8"  # SOI
        return frame[:2] + b"\xff\xfe" + (len(marker) + 2).to_bytes(2, "big") + marker + frame[2:]
    return edit


def _j2k_comment(marker: bytes) -> Callable[[bytes], bytes]:
    def edit(frame: bytes) -> bytes:
        siz = frame.index(b"\xff\x51")  # the COM marker may follow SIZ in the main header
        end = siz + 2 + int.from_bytes(frame[siz + 2 : siz + 4], "big")
        segment = b"\xff\x64" + (len(marker) + 4).to_bytes(2, "big") + b"\x00\x01" + marker  # Rcom 1: Latin text
        return frame[:end] + segment + frame[end:]
    return edit


def _after_end(marker: bytes) -> Callable[[bytes], bytes]:
    return lambda frame: frame + marker


CASES = {
    "JPEG COM segment (baseline JPEG)": ("SC_rgb_jpeg_dcmtk.dcm", "MRKZQXJPEGCOMMENT1", _jpeg_comment),
    "bytes after the JPEG EOI": ("SC_rgb_jpeg_dcmtk.dcm", "MRKZQXJPEGTRAILER2", _after_end),
    "JPEG 2000 COM marker (MR, lossless)": ("MR_small_jp2klossless.dcm", "MRKZQXJ2KCOMMENT3", _j2k_comment),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_hidden_in_the_compressed_pixel_stream_does_not_reach_the_store(
    case: str, make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    template, marker, edit = CASES[case]
    ds = pydicom.dcmread(get_testdata_file(template))
    ds.PatientID = "REVIEW2-PIX-1"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    plant = edit(marker.encode())
    ds.PixelData = encapsulate([plant(f) for f in generate_frames(ds.PixelData, number_of_frames=frames)])
    folder = tmp_path / "in"
    folder.mkdir()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    (folder / "image.dcm").write_bytes(buffer.getvalue())
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert (report.quarantined, len(report.ingested)) == ([], 1)  # it decodes: a valid image
    with node.sessions() as session:
        record = session.scalars(select(Record)).one()
    assert pydicom.dcmread(node.dir / record.path).pixel_array.shape == ds.pixel_array.shape
    hits = scan_tree(node.dir, [marker])
    assert hits == [], f"{case} kept {marker!r}:\n{describe(hits)}"


def test_text_after_the_last_pixel_of_native_pixel_data_does_not_reach_the_store(
    make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """Native pixel data longer than Rows x Columns x samples: pydicom calls the excess padding and
    warns; before the fix the node noted the warning and stored the excess (3,400 bytes of text)."""
    marker = "MRKZQXPIXELTAIL04"
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = "REVIEW2-PIX-2"
    ds.PixelData = ds.PixelData + (marker.encode() + b" ") * 200
    hits = scan_tree(ingest_dataset(make_node(role=False), ds, tmp_path / "in"), [marker])
    assert hits == [], f"the excess pixel bytes kept {marker!r}:\n{describe(hits)}"


def test_a_jpeg_frame_with_a_reserved_marker_is_quarantined_not_stored(
    make_node, tmp_path: Path  # type: ignore[no-untyped-def]
) -> None:
    """libjpeg skips a reserved marker segment (JPG0, FFF0) and decodes the image, so the parser accepts
    it; the node cannot know what such a segment holds, so it refuses the file."""
    marker = "MRKZQXRESERVED05"
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    ds.PatientID = "REVIEW2-PIX-3"
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame[:2] + b"\xff\xf0" + (len(marker) + 2).to_bytes(2, "big") + marker.encode()
                                + frame[2:]])
    assert ds.pixel_array.shape == (100, 100, 3)  # it decodes
    folder = tmp_path / "in"
    folder.mkdir()
    ds.save_as(folder / "image.dcm", enforce_file_format=True)
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert report.ingested == []
    assert len(report.quarantined) == 1
    # Words that occur in the file (here "JPEG") are redacted from reasons; the marker's code is not.
    assert "has the reserved <value> marker fff0, which the node cannot prove free of text" in report.quarantined[0][1]
    with node.sessions() as session:
        assert session.scalars(select(Record)).all() == []  # nothing stored (the quarantine keeps the original)


def test_what_was_dropped_is_reported_as_a_flag(make_node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(get_testdata_file("MR_small_jp2klossless.dcm"))  # its codestream has a 38-byte COM
    ds.PatientID = "REVIEW2-PIX-4"
    folder = tmp_path / "in"
    folder.mkdir()
    ds.save_as(folder / "image.dcm", enforce_file_format=True)
    node = make_node(role=False)
    report = Ingestor(node).run([folder])
    assert len(report.ingested) == 1
    notes = [note for _, note in report.flags if note.startswith("pixel data")]
    assert notes == ["pixel data (JPEG 2000): removed what decoding does not read: frame 1: COM (38 bytes)"]
