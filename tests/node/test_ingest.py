"""Ingest: real public DICOM files, raw data files, bad files, re-runs and interruptions."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from contracts.datause import Kind
from node.catalog import Patient, QuarantineEntry, Record
from node.exit_codes import ExitCode
from node.ingest import Ingestor, read_sidecar

# Bundled with pydicom, then from pydicom-data: CT, MR, multi-frame, and compressed
# (JPEG 2000, RLE, JPEG-LS, JPEG 2000 lossless MR, enhanced multi-frame CT).
REAL_FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm", "MR_small_jpeg_ls_lossless.dcm",
              "emri_small.dcm", "MR2_J2KR.dcm", "eCT_Supplemental.dcm", "liver.dcm"]


def records(node) -> list[Record]:  # type: ignore[no-untyped-def]
    with node.sessions() as s:
        return list(s.scalars(select(Record)))


@pytest.fixture
def node(make_node):  # type: ignore[no-untyped-def]
    return make_node(role=False)


@pytest.fixture
def good_dir(tmp_path: Path) -> Path:
    d = tmp_path / "good"
    d.mkdir()
    for name in REAL_FILES:
        shutil.copy(get_testdata_file(name), d / name)
    return d


def test_real_public_files_are_ingested_de_identified(node, good_dir: Path) -> None:
    report = Ingestor(node, default_patient="TEST-UNNAMED").run([good_dir])
    assert report.quarantined == []
    assert len(report.ingested) == len(REAL_FILES)
    assert report.exit_code == ExitCode.OK
    for rec in records(node):
        stored = pydicom.dcmread(node.dir / rec.path)
        assert stored.PatientIdentityRemoved == "YES"
        assert stored.PatientID == rec.patient_pseudonym
        assert rec.kind == int(Kind.IMAGE)
        assert stored.pixel_array.size > 0  # still decodable after de-identification


def test_same_patient_gets_one_pseudonym(node, tmp_path: Path) -> None:
    d = tmp_path / "series"
    d.mkdir()
    for i in range(3):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = i + 1
        ds.save_as(d / f"{i}.dcm")
    Ingestor(node).run([d])
    with node.sessions() as s:
        assert s.scalar(select(func.count()).select_from(Patient)) == 1
    assert len({r.series_uid for r in records(node)}) == 1


def test_mixed_folder_ingests_good_and_quarantines_bad_with_reasons(node, good_dir: Path) -> None:
    ct = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    (good_dir / "truncated.dcm").write_bytes(ct[: len(ct) // 2])
    (good_dir / "notes.txt").write_text("not an image\n")
    (good_dir / "empty.dcm").write_bytes(b"")
    (good_dir / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 300)
    # Deflated pixel data stripped to garbage that no decoder accepts.
    bad_pixels = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    bad_pixels.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 64])
    bad_pixels.save_as(good_dir / "undecodable.dcm")

    report = Ingestor(node, default_patient="TEST-UNNAMED").run([good_dir])
    reasons = dict((Path(s).name, r) for s, r in report.quarantined)
    assert set(reasons) == {"truncated.dcm", "notes.txt", "empty.dcm", "corrupt.h5", "undecodable.dcm"}
    assert "empty file" in reasons["empty.dcm"]
    assert "neither DICOM" in reasons["notes.txt"]
    assert "HDF5 cannot be read" in reasons["corrupt.h5"]
    assert "pixel data cannot be decoded" in reasons["undecodable.dcm"]
    assert "truncated" in reasons["truncated.dcm"] or "decoded" in reasons["truncated.dcm"]
    assert len(report.ingested) == len(REAL_FILES)
    assert report.exit_code == ExitCode.PARTIAL
    qdir = node.dir / "quarantine"
    assert len(list(qdir.glob("*.reason.txt"))) == 5
    assert sorted(p.name for p in good_dir.iterdir()) == sorted(REAL_FILES)  # bad files moved out
    copies = [p for p in qdir.iterdir() if not p.name.endswith(".reason.txt")]
    for copy in copies:  # named by the sha256 of the bytes, never by the source's name
        assert copy.name.split(".")[0] == hashlib.sha256(copy.read_bytes()).hexdigest()
    named = {Path(p.read_text().splitlines()[0].removeprefix("source: ")).name for p in qdir.glob("*.reason.txt")}
    assert named == set(reasons)
    with node.sessions() as s:
        assert s.scalar(select(func.count()).select_from(QuarantineEntry)) == 5


def test_keep_bad_copies_instead_of_moving(node, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.txt").write_text("x")
    report = Ingestor(node, keep_bad=True).run([tmp_path / "bad"])
    assert len(report.quarantined) == 1
    assert (tmp_path / "bad" / "x.txt").exists()
    assert [p.read_bytes() for p in (node.dir / "quarantine").glob("*.txt") if ".reason" not in p.name] == [b"x"]


def test_only_bad_files_exit_failed(node, tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.txt").write_text("x")
    assert Ingestor(node).run([tmp_path / "bad"]).exit_code == ExitCode.FAILED


def test_reingest_changes_nothing(node, good_dir: Path) -> None:
    Ingestor(node, default_patient="TEST-UNNAMED").run([good_dir])
    before = sorted((r.record_id, r.path) for r in records(node))
    again = Ingestor(node, default_patient="TEST-UNNAMED").run([good_dir])
    assert (len(again.ingested), len(again.duplicates)) == (0, len(REAL_FILES))
    assert sorted((r.record_id, r.path) for r in records(node)) == before


def test_interrupted_ingest_is_finished_by_a_rerun(node, good_dir: Path) -> None:
    class Interrupt(Exception):
        pass

    def stop_after_four(done: int, total: int, name: str) -> None:
        if done == 4:
            raise Interrupt

    with pytest.raises(Interrupt):
        Ingestor(node, batch=2, default_patient="TEST-UNNAMED").run([good_dir], progress=stop_after_four)
    partial = len(records(node))
    assert 0 < partial < len(REAL_FILES)
    report = Ingestor(node, batch=2, default_patient="TEST-UNNAMED").run([good_dir])
    assert len(records(node)) == len(REAL_FILES)
    assert len(report.ingested) + len(report.duplicates) == len(REAL_FILES)
    assert len({r.record_id for r in records(node)}) == len(REAL_FILES)


def test_sidecar_labels_and_patients(node, tmp_path: Path, good_dir: Path) -> None:
    sidecar = tmp_path / "labels.csv"
    sidecar.write_text("file,label\nCT_small.dcm,lesion\nMR_small.dcm,normal\n")
    Ingestor(node, sidecar=read_sidecar(sidecar), default_patient="TEST-UNNAMED").run([good_dir])
    labels = {r.modality: r.label for r in records(node) if r.label}
    assert labels == {"CT": "lesion", "MR": "normal"}


def test_sidecar_paths_relative_to_the_sidecar_match(node, tmp_path: Path, good_dir: Path) -> None:
    """A sidecar next to the ingested folder names files as ``good/<name>`` (as tasks.write_labels_csv does)."""
    sidecar = tmp_path / "labels.csv"
    sidecar.write_text("file,label\ngood/CT_small.dcm,lesion\ngood/MR_small.dcm,normal\n")
    Ingestor(node, sidecar=read_sidecar(sidecar), default_patient="TEST-UNNAMED").run([good_dir])
    labels = {r.modality: r.label for r in records(node) if r.label}
    assert labels == {"CT": "lesion", "MR": "normal"}


def test_sidecar_without_file_column_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("name,label\nx,y\n")
    from node.errors import IngestError

    with pytest.raises(IngestError, match="needs a 'file' column"):
        read_sidecar(bad)
