"""Nothing planted in a raw file survives ingest: every byte the node wrote is scanned for every marker.

The files come from ``tests/node/raw_deid_planted.py``, which derives the places to plant from the
formats (the ISMRMRD schema classes, every HDF5 object), not from the node's allow-lists.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import h5py
import ismrmrd.xsd
import pydicom
import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import select

from contracts.datause import Kind
from node.catalog import Record
from node.deid import UidMapper
from node.ingest import Ingestor, iter_report_lines
from node.node import Node
from node.vault import VaultEntry
from raw_data import read_sinogram
from tests.node.leakscan import describe, scan_bytes, scan_tree
from tests.node.raw_deid_planted import Plant, planted_ismrmrd, planted_sinogram


@dataclass
class Ingested:
    node: Node
    sinogram: Plant
    mr: Plant
    local_ids: dict[str, str]  # "S" / "M" -> the hospital's patient id planted in that file
    report_lines: list[str]  # what `metai-node ingest` prints

    def records(self, kind: Kind) -> list[Record]:
        with self.node.sessions() as s:
            return list(s.scalars(select(Record).where(Record.kind == int(kind))))

    def patient(self, tag: str) -> VaultEntry:
        with self.node.sessions() as s:
            entry = self.node.vault.find(s, self.local_ids[tag])
        assert entry is not None
        return entry


@pytest.fixture
def ingested(make_node, tmp_path: Path) -> Ingested:  # type: ignore[no-untyped-def]
    node = make_node(role=False)
    folder = tmp_path / "export"
    folder.mkdir()
    sino, mr = Plant("S"), Plant("M")
    local_ids = {"S": "LOCAL-S-" + sino.marker("local patient id"), "M": "LOCAL-M-" + mr.marker("local patient id")}
    planted_sinogram(folder / "ct.h5", sino, local_ids["S"])
    planted_ismrmrd(folder / "mr.h5", mr, local_ids["M"])
    # The DICOM image of the same MR exam: same patient, same study and frame of reference.
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID = local_ids["M"]
    ds.StudyInstanceUID = _planted_uid(mr, "studyInstanceUID")
    ds.FrameOfReferenceUID = _planted_uid(mr, "frameOfReferenceUID")
    ds.save_as(folder / "image.dcm")
    report = Ingestor(node).run([folder])
    assert report.quarantined == []
    assert len(report.ingested) == 3
    return Ingested(node, sino, mr, local_ids, list(iter_report_lines(report)))


def _planted_uid(plant: Plant, field: str) -> str:
    (uid,) = [uid for uid, where in plant.uids.items() if where.endswith("/" + field)]
    return uid


def test_planted_markers_in_every_raw_field_leave_no_trace_in_the_node(ingested: Ingested) -> None:
    plants = [ingested.sinogram, ingested.mr]
    markers = set().union(*(p.all_markers() for p in plants))
    assert len(markers) > 250  # the generators planted what they say (schema walk + every HDF5 object)
    hits = scan_tree(ingested.node.dir, markers)
    survivors = sorted({h.marker for h in hits})
    where = {}
    for plant in plants:
        compact_dates = {d.replace("-", ""): w for d, w in plant.dates.items()}
        places = {**plant.markers, **plant.uids, **plant.dates, **compact_dates}
        where.update({m: places[m] for m in survivors if m in places})
    assert hits == [], (
        f"{len(survivors)} of {len(markers)} planted markers survive:\n"
        + "\n".join(f"  {m}: planted as {where.get(m)}" for m in survivors)
        + "\n" + describe(hits)
    )


def test_the_ingest_report_names_no_planted_value(ingested: Ingested) -> None:
    markers = ingested.sinogram.all_markers() | ingested.mr.all_markers()
    assert any("left out" in line for line in ingested.report_lines)  # the notes are there, as counts
    assert list(scan_bytes("\n".join(ingested.report_lines).encode(), markers)) == []


def test_uids_come_out_mapped_with_the_dicom_mapping(ingested: Ingested) -> None:
    (record,) = ingested.records(Kind.MR_KSPACE)
    stored = (ingested.node.dir / record.path).read_bytes()
    mapper = UidMapper(ingested.node.secrets.uid_secret)
    assert ingested.mr.uids  # study, series root, frame of reference, referenced SOP instances
    for uid, where in ingested.mr.uids.items():
        assert mapper.map(uid).encode() in stored, f"{where} is not mapped"


def test_raw_data_and_dicom_of_one_exam_still_link_on_the_node(ingested: Ingested) -> None:
    (raw,) = ingested.records(Kind.MR_KSPACE)
    (image,) = ingested.records(Kind.IMAGE)
    mapper = UidMapper(ingested.node.secrets.uid_secret)
    study = mapper.map(_planted_uid(ingested.mr, "studyInstanceUID"))
    assert raw.study_uid == image.study_uid == study
    assert raw.patient_pseudonym == image.patient_pseudonym
    with h5py.File(ingested.node.dir / raw.path, "r") as f:
        header = ismrmrd.xsd.CreateFromDocument(f["dataset/xml"][0])
    dicom = pydicom.dcmread(ingested.node.dir / image.path)
    assert header.measurementInformation.frameOfReferenceUID == dicom.FrameOfReferenceUID
    assert header.studyInformation.studyInstanceUID == dicom.StudyInstanceUID


def test_dates_come_out_shifted_by_the_patients_offset(ingested: Ingested) -> None:
    (raw,) = ingested.records(Kind.MR_KSPACE)
    shift = _dt.timedelta(days=ingested.patient("M").date_shift_days)
    assert shift
    with h5py.File(ingested.node.dir / raw.path, "r") as f:
        header = ismrmrd.xsd.CreateFromDocument(f["dataset/xml"][0])
    planted = {where.rsplit("/", 1)[-1]: _dt.date.fromisoformat(d) for d, where in ingested.mr.dates.items()}
    assert header.studyInformation.studyDate.to_date() == planted["studyDate"] + shift
    assert header.measurementInformation.seriesDate.to_date() == planted["seriesDate"] + shift
    assert header.subjectInformation.patientBirthdate is None  # PS3.15 Z: removed, not shifted
    (sino,) = ingested.records(Kind.CT_SINOGRAM)
    shift = _dt.timedelta(days=ingested.patient("S").date_shift_days)
    provenance = read_sinogram(ingested.node.dir / sino.path).provenance
    for key in ("created_at", "acquired_at"):
        (day,) = [d for d, where in ingested.sinogram.dates.items() if where == f"provenance {key}"]
        moment = _dt.datetime.fromisoformat(provenance[key])
        assert moment.date() == _dt.date.fromisoformat(day) + shift
        assert moment.time() == _dt.time(9, 30)  # the time of day is kept
