"""Differential privacy end to end on the deployment engine: every round records the epsilon it
spent, and the study stops before a round that would exceed its budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.events import RoundRecorded, read_events
from contracts.studies import StudyStatus
from coordinator.model_card import read_card
from tests.federated.conftest import STUDY_CONFIG, running_study

NOISE = 2.0
# With z = 2 and delta = 1e-5 (RDP, no sampling amplification) the total epsilon is about
# 2.17 after one round, 3.19 after two and 4.01 after three: a budget of 3.5 allows two rounds.
BUDGET_MILLI = 3500


@pytest.mark.slow
def test_rounds_record_epsilon_and_the_study_stops_at_the_budget(tmp_path: Path, exchange, actors, hospitals,
                                                                   flower_run) -> None:
    from tasks import load_weights, weights_hash

    study_id = running_study(exchange, actors, hospitals, rounds=3, privacy_budget=BUDGET_MILLI)

    result = flower_run({**STUDY_CONFIG, "study-id": study_id, "dp-noise-multiplier": NOISE, "dp-clipping-norm": 0.5,
                         "dp-delta": 1e-5})
    # "finished:failed" starts with "finished" too: a ServerApp that failed after the last round must not pass
    assert result.status == "finished:completed", result.logs[-3000:]

    record = exchange.studies.study(study_id)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 2
    log = json.loads((tmp_path / "models" / f"study-{study_id}" / "study.json").read_text())
    assert "round 3 would take epsilon" in log["stopped"]
    recorded = [r["privacy"]["milli_epsilon"] for r in log["rounds"]]
    assert all(m > 0 for m in recorded)
    assert record.privacy_spent == sum(recorded) <= BUDGET_MILLI
    # the chain's total covers the accountant's epsilon (rounded up to the milli-epsilon)
    assert record.privacy_spent / 1000 >= log["privacy"]["epsilon"] > record.privacy_spent / 1000 - 0.001
    events = [e for e in read_events(exchange.chain, [exchange.studies.address])
              if isinstance(e, RoundRecorded) and e.study_id == study_id]
    assert [e.privacy_spent for e in events] == recorded
    final = load_weights(tmp_path / "models" / f"study-{study_id}" / "final.npz")
    assert weights_hash(final) == record.final_model_hash
    # the model card states the budget and the epsilon as the chain holds them, and why it stopped
    card = read_card(tmp_path / "models" / f"study-{study_id}" / "model-card.json")
    assert card["privacy"]["differential_privacy"] is True
    assert card["privacy"]["budget_epsilon"] == BUDGET_MILLI / 1000
    assert card["privacy"]["epsilon_spent_on_chain"] == record.privacy_spent / 1000
    assert card["privacy"]["epsilon_accountant"] == log["privacy"]["epsilon"]
    assert card["privacy"]["noise_multiplier"] == NOISE
    assert [r["privacy_spent_epsilon"] for r in card["rounds"]] == [m / 1000 for m in recorded]
    assert "round 3 would take epsilon" in card["stopped_early"]
    assert (card["study"]["rounds_requested"], card["study"]["rounds_completed"]) == (3, 2)
