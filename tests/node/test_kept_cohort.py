"""A kept cohort file says what it is, and one of another format, version or shape is refused naming the file.

Version 2 names the registered datasets of the members; a version 1 file (kept before
contributions named datasets) still reads, its members' datasets unknown.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.kept_cohort import KeptCohort, KeptCohortError, KeptMember, kept_cohort_path, read_kept_cohort

KEPT = KeptCohort(3, 2, 120, "0x" + "ab" * 32, 2, (KeptMember("r1", 4, "0x" + "01" * 20, 5),
                                                   KeptMember("r2", 4, "0x" + "02" * 20, 7)), (5, 7))


def _write(node_dir: Path, data: object) -> Path:
    path = kept_cohort_path(node_dir, 3, 2)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_kept_cohort_reads_back_as_written(tmp_path: Path) -> None:
    _write(tmp_path, KEPT.to_json())
    assert read_kept_cohort(tmp_path, 3, 2) == KEPT


def test_a_version_1_file_reads_with_its_datasets_unknown(tmp_path: Path) -> None:
    old = {"format": "metai-kept-cohort", "version": 1, "study_id": 3, "round": 2, "block": 120,
           "root": "0x" + "ab" * 32, "count": 2,
           "members": [{"record_id": "r1", "kind": 4, "patient": "0x" + "01" * 20},
                       {"record_id": "r2", "kind": 4, "patient": "0x" + "02" * 20}]}
    _write(tmp_path, old)
    kept = read_kept_cohort(tmp_path, 3, 2)
    assert kept == KeptCohort(3, 2, 120, "0x" + "ab" * 32, 2, (KeptMember("r1", 4, "0x" + "01" * 20),
                                                               KeptMember("r2", 4, "0x" + "02" * 20)))
    assert (kept.dataset_ids, {m.dataset_id for m in kept.members}) == ((), {None})


@pytest.mark.parametrize(("change", "why"), [
    ({"format": "metai-study-log"}, "expected format 'metai-kept-cohort' version 1 or 2"),
    ({"version": 3}, "expected format 'metai-kept-cohort' version 1 or 2"),
    ({"block": "soon"}, "malformed"),
    ({"members": [{"record_id": "r1"}]}, "malformed"),
    ({"members": [{"record_id": "r1", "kind": 4, "patient": "0x" + "01" * 20}]}, "malformed"),  # no dataset_id
    ({"dataset_ids": ["one"]}, "malformed"),
])
def test_another_format_or_shape_is_refused_naming_the_file(tmp_path: Path, change: dict[str, object],
                                                            why: str) -> None:
    path = _write(tmp_path, {**KEPT.to_json(), **change})
    with pytest.raises(KeptCohortError, match=why) as raised:
        read_kept_cohort(tmp_path, 3, 2)
    assert str(path) in str(raised.value)


def test_a_file_without_format_is_refused(tmp_path: Path) -> None:
    legacy = {k: v for k, v in KEPT.to_json().items() if k not in ("format", "version")}
    _write(tmp_path, legacy)
    with pytest.raises(KeptCohortError, match=r"is \(None, None\)"):
        read_kept_cohort(tmp_path, 3, 2)


def test_a_round_never_kept_is_named(tmp_path: Path) -> None:
    with pytest.raises(KeptCohortError, match="no cohort was kept for round 2 of study 3"):
        read_kept_cohort(tmp_path, 3, 2)
