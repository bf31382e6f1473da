"""On the deployment engine, a node that refuses a round does not stop the study while the
minimum number of nodes still holds, and the chain shows who contributed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.datause import Purpose, Scope
from contracts.studies import StudyStatus
from tests.federated.conftest import STUDY_CONFIG


@pytest.mark.slow
def test_a_refusing_node_is_skipped_while_min_nodes_holds(tmp_path: Path, exchange, actors, hospitals, study,
                                                          flower_run) -> None:
    beta = hospitals[1]
    for key in beta.patients.values():  # every patient of Beta withdraws: Beta has nothing to train on
        exchange.consent.relay(actors.coordinator, exchange.consent.sign_revoke(key, Scope(purpose=Purpose.GRU)))

    result = flower_run({**STUDY_CONFIG, "study-id": study, "min-nodes": 1})
    assert result.status == "finished:completed", result.logs[-3000:]

    record = exchange.studies.study(study)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 3
    log = json.loads((tmp_path / "models" / f"study-{study}" / "study.json").read_text())
    alpha = hospitals[0].node.address
    for round_ in (1, 2, 3):
        assert exchange.studies.contribution_of(study, round_, alpha).cohort_count == 12
        assert exchange.studies.contribution_of(study, round_, beta.node.address).cohort_count == 0
        entry = log["rounds"][round_ - 1]
        assert entry["contributors"] == [alpha]
        assert any("no consenting records" in reason for reason in entry["refused"]), entry["refused"]
