"""study.json: typed records written with their format and version, and read back only in that format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coordinator.study_log import (
    FORMAT,
    VERSION,
    HeldOut,
    RoundPrivacy,
    RoundRecord,
    StudyLog,
    StudyLogError,
    StudyPrivacy,
    read_study_log,
)


def _log() -> StudyLog:
    first = RoundRecord(round=1, contributors=["0xA"], cohort_counts=[12], refused=["0xB: no consenting records"],
                        synthetic_counts={"0xA": 12}, model_hash="0x" + "ab" * 32,
                        eval={"loss": 0.5, "accuracy": 0.75, "examples": 32}, block=41,
                        privacy=RoundPrivacy(2170, 2.17), seconds=3.5, server_seconds={"check": 0.1},
                        node_seconds={"0xA": {"train": 1.5}})
    return StudyLog(study_id=7, task="ct-sinogram-lesion-v1", held_out=HeldOut(32, 990001), rounds=[first],
                    final_model_hash="0x" + "cd" * 32, stopped="privacy budget",
                    privacy=StudyPrivacy(2.17, 1e-5, 2170, 3500, 2.0, 1.0))


def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    path = _log().write(tmp_path)
    assert path == tmp_path / "study.json"
    data = json.loads(path.read_text())
    assert (data["format"], data["version"]) == (FORMAT, VERSION) == ("metai-study-log", 1)
    assert data["rounds"][0]["privacy"] == {"milli_epsilon": 2170, "epsilon_total": 2.17}
    assert read_study_log(tmp_path) == _log()
    assert read_study_log(path) == _log()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_a_record_without_privacy_holds_null(tmp_path: Path) -> None:
    log = _log()
    log.privacy = None
    log.rounds[0].privacy = None
    assert json.loads(log.write(tmp_path).read_text())["privacy"] is None
    assert read_study_log(tmp_path) == log


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.pop("format"), "format None, expected 'metai-study-log'"),
    (lambda d: d.update(format="metai-model-card"), "format 'metai-model-card', expected 'metai-study-log'"),
    (lambda d: d.update(version=2), "metai-study-log version 2; this build reads version 1"),
    (lambda d: d.pop("held_out"), r"malformed metai-study-log version 1 \(KeyError\('held_out'\)\)"),
    (lambda d: d["rounds"][0].pop("eval"), r"malformed .*KeyError\('eval'\)"),
    (lambda d: d["held_out"].update(size=3), "malformed .*unexpected keyword argument 'size'"),
])
def test_another_format_version_or_shape_is_refused(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _log().to_json()
    change(data)
    (tmp_path / "study.json").write_text(json.dumps(data))
    with pytest.raises(StudyLogError, match=message):
        read_study_log(tmp_path)


def test_a_missing_or_broken_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(StudyLogError, match=r"study\.json: no such study record"):
        read_study_log(tmp_path)
    (tmp_path / "study.json").write_text('{"format": "metai-study-log", "vers')
    with pytest.raises(StudyLogError, match="not a readable JSON study record"):
        read_study_log(tmp_path)
    (tmp_path / "study.json").write_text("[1, 2]")
    with pytest.raises(StudyLogError, match="format 'list', expected"):
        read_study_log(tmp_path)
