"""No value of an ingested file reaches a terminal or a log: reader warnings become value-free notes."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

from node.ingest import Ingestor
from tests.node.ingest_corpus import dicom_bytes, files_containing, run_ingest

MARK = "MRKZQ"  # planted in identifying and date elements
CHARSET_MARK = "CSMRKQ"  # planted in SpecificCharacterSet, which de-identification keeps


def _planted(folder: Path) -> Path:
    folder.mkdir()
    (folder / "dates.dcm").write_bytes(dicom_bytes(
        patient="QUIET-1", instance=1, PatientBirthDate=f"19701301{MARK}", StudyDate=f"2024{MARK}01",
        SeriesDate=f"{MARK}0101", AcquisitionDateTime=f"2024{MARK}", PatientAge=f"{MARK}Y",
        SpecificCharacterSet=CHARSET_MARK))
    (folder / "photometric.dcm").write_bytes(dicom_bytes(
        patient="QUIET-2", instance=2, PhotometricInterpretation=f"{MARK}-PI", PatientBirthDate=f"1970{MARK}"))
    (folder / "charset-only.dcm").write_bytes(dicom_bytes(patient="QUIET-3", instance=3,
                                                          SpecificCharacterSet=f"{CHARSET_MARK}-2"))
    return folder


def test_cli_prints_no_planted_value_and_the_node_keeps_none_outside_the_quarantine(make_node, tmp_path: Path) -> None:
    node = make_node("Quiet", role=False)
    result = run_ingest(node.dir, str(_planted(tmp_path / "in")))
    assert result.returncode == 2, result.stdout + result.stderr  # photometric.dcm is quarantined
    for marker in (MARK, CHARSET_MARK):
        assert marker not in result.stdout
        assert marker not in result.stderr
    assert "reader warning: UserWarning: Unknown encoding <value> - using default encoding instead" in result.stdout
    assert "pixel data cannot be decoded" in result.stdout
    # The catalog (and its WAL), the reason files, the stored records: none holds a planted
    # identifier or date. Only the quarantined original itself does, as it must.
    leaks = files_containing(node.dir, MARK.encode())
    assert [p.relative_to(node.dir).parent.as_posix() for p in leaks] == ["quarantine"]
    assert not leaks[0].name.endswith(".reason.txt")


def test_library_warnings_and_log_records_stay_inside_the_ingest(node_for_quiet, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    folder = _planted(tmp_path / "in")
    caplog.clear()  # what writing the planted files logged
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = Ingestor(node_for_quiet, workers=1).run([folder])
    assert len(report.ingested) == 2
    escaped = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert [text for text in escaped if MARK in text or CHARSET_MARK in text] == []
    notes = [note for _, note in report.flags]
    assert "reader warning: pydicom logged: Unknown encoding <value> - using default encoding instead" in notes


@pytest.fixture
def node_for_quiet(make_node):  # type: ignore[no-untyped-def]
    return make_node("Quiet In Process", role=False)
