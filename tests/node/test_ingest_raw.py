"""Ingest of raw data: MeTAI CT sinograms and ISMRMRD k-space, with their patient fields scrubbed."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import pytest
from sqlalchemy import select

from contracts.datause import Kind
from node.catalog import Record
from node.ingest import Ingestor
from raw_data import (
    Sinogram,
    coil_sensitivities,
    get_profile,
    make_patient,
    read_ismrmrd,
    read_sinogram,
    scan_image,
    simulate_kspace,
    write_ismrmrd,
    write_sinogram,
)

NS = "{http://www.ismrm.org/ISMRMRD}"


@pytest.fixture
def node(make_node):  # type: ignore[no-untyped-def]
    return make_node(role=False)


def stored(node, kind: Kind) -> list[Record]:  # type: ignore[no-untyped-def]
    with node.sessions() as s:
        return list(s.scalars(select(Record).where(Record.kind == int(kind))))


def sinogram_file(path: Path, patient_id: str) -> None:
    patient = make_patient(3)
    profile = get_profile("compact-head")
    grid = patient.grid(64)
    sino = scan_image(patient.image(64), grid, profile, seed=1, source="Test^Patient head scan")
    provenance = {**sino.provenance, "patient_id": patient_id, "patient_name": "Test^Patient",
                  "created_at": "2024-03-05T10:00:00+00:00", "synthetic": "true"}
    write_sinogram(path, Sinogram(sino.data, sino.geometry, sino.profile, provenance))


def kspace_file(path: Path, patient_id: str | None) -> None:
    image = make_patient(4).image(32).astype(np.float32)
    k = simulate_kspace(image, coil_sensitivities((32, 32), 4), noise_std=0.0)
    write_ismrmrd(path, k)
    if patient_id is None:
        return
    with h5py.File(path, "r+") as f:  # what a scanner export adds: identifying header fields
        root = ET.fromstring(f["dataset"]["xml"][0])
        subject = ET.Element(NS + "subjectInformation")
        for name, value in (("patientName", "Test^Patient"), ("patientID", patient_id),
                            ("patientBirthdate", "1970-01-01")):
            ET.SubElement(subject, NS + name).text = value
        study = ET.Element(NS + "studyInformation")
        ET.SubElement(study, NS + "studyDate").text = "2024-03-05"
        ET.SubElement(study, NS + "accessionNumber").text = "987654321"
        root.insert(0, study)
        root.insert(0, subject)
        text = ET.tostring(root, encoding="unicode")
        dtype = f["dataset"]["xml"].dtype
        del f["dataset"]["xml"]
        f["dataset"].create_dataset("xml", data=[text], dtype=dtype)


def test_sinogram_is_ingested_with_provenance_scrubbed(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sinogram_file(folder / "scan.h5", "TEST-RAW-1")
    report = Ingestor(node).run([folder])
    assert report.quarantined == []
    (record,) = stored(node, Kind.CT_SINOGRAM)
    assert record.synthetic
    out = read_sinogram(node.dir / record.path)
    assert np.array_equal(out.data, read_sinogram(folder / "scan.h5").data)
    assert out.provenance["patient"] == record.patient_pseudonym
    assert "patient_id" not in out.provenance
    assert "patient_name" not in out.provenance
    assert "source" not in out.provenance  # free text cannot be checked: removed
    assert not out.provenance["created_at"].startswith("2024-03-05")  # shifted
    assert b"TEST-RAW-1" not in (node.dir / record.path).read_bytes()


def test_ismrmrd_is_ingested_with_header_scrubbed(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    kspace_file(folder / "knee.h5", "TEST-RAW-2")
    report = Ingestor(node).run([folder])
    assert report.quarantined == []
    (record,) = stored(node, Kind.MR_KSPACE)
    content = (node.dir / record.path).read_bytes()
    for secret in (b"Test^Patient", b"TEST-RAW-2", b"1970-01-01", b"987654321", b"2024-03-05"):
        assert secret not in content
    with h5py.File(node.dir / record.path) as f:
        root = ET.fromstring(f["dataset"]["xml"][0])
    assert root.find(f"{NS}subjectInformation/{NS}patientID").text == record.patient_pseudonym
    k = read_ismrmrd(node.dir / record.path)  # still a valid ISMRMRD dataset
    assert np.allclose(k.data, read_ismrmrd(folder / "knee.h5").data)


def test_reference_tool_output_needs_a_patient(node, tmp_path: Path) -> None:
    tool = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
    assert tool is not None, "make test installs ismrmrd-tools"
    folder = tmp_path / "in"
    folder.mkdir()
    subprocess.run([tool, "-m", "64", "-c", "4", "-o", str(folder / "sl.h5")], check=True, capture_output=True)
    report = Ingestor(node, keep_bad=True).run([folder])
    assert [reason for _, reason in report.quarantined] == [
        "names no patient (no PatientID / patientID / patient_id): give one in the sidecar's patient_id column "
        "or with --patient"
    ]
    report = Ingestor(node, default_patient="TEST-PHANTOM").run([folder])
    assert len(report.ingested) == 1
    (record,) = stored(node, Kind.MR_KSPACE)
    assert record.modality == "MR"


def test_truncated_raw_files_are_quarantined(node, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    sinogram_file(tmp_path / "full.h5", "TEST-RAW-3")
    data = (tmp_path / "full.h5").read_bytes()
    (folder / "cut.h5").write_bytes(data[: len(data) // 2])
    report = Ingestor(node).run([folder])
    assert len(report.quarantined) == 1
    assert "truncated or corrupt" in report.quarantined[0][1] or "invalid CT sinogram" in report.quarantined[0][1]
