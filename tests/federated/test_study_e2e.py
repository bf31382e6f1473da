"""End to end on the Flower deployment engine: Anvil + SuperLink + two SuperNodes, and everything
checked against the chain.

The three studies run one after the other on one federation started for the module (as
studies do in a deployment); the chain is put back after each test, so each starts from the
same hospitals, patients and consents:

- three rounds with one revocation between rounds 1 and 2;
- a node that refuses every round does not stop the study while the minimum number of nodes
  still holds, and the chain shows who contributed;
- differential privacy: every round records the epsilon it spent, and the study stops before
  a round that would exceed its budget.
"""

from __future__ import annotations

import threading

import pytest

from contracts.datause import Purpose, Scope
from contracts.events import RoundRecorded, read_events
from contracts.studies import StudyStatus
from coordinator.model_card import read_card
from coordinator.study_log import read_study_log
from node.cohort import build_cohort
from node.kept_cohort import read_kept_cohort
from tests.federated.conftest import STUDY_CONFIG, FlowerRun, running_study

NOISE = 2.0
# With z = 2 and delta = 1e-5 (RDP, no sampling amplification) the total epsilon is about
# 2.17 after one round, 3.19 after two and 4.01 after three: a budget of 3.5 allows two rounds.
BUDGET_MILLI = 3500


@pytest.mark.slow
def test_three_rounds_with_a_revocation(exchange, actors, hospitals, study,  # type: ignore[no-untyped-def]
                                        flower_run: FlowerRun) -> None:
    from tasks import load_weights, weights_hash

    models = flower_run.models
    revoked_pid, revoked_key = next(iter(hospitals[0].patients.items()))
    revoked_at: list[int] = []
    done = threading.Event()

    def revoke_after_round_one() -> None:
        while exchange.studies.round_model_hash(study, 1) == bytes(32):
            if done.wait(0.2):
                return  # the run ended without a first round
        tx = exchange.consent.relay(actors.coordinator,
                                    exchange.consent.sign_revoke(revoked_key, Scope(purpose=Purpose.GRU)))
        revoked_at.append(tx.block_number)

    watcher = threading.Thread(target=revoke_after_round_one, daemon=True)
    watcher.start()
    try:
        result = flower_run({**STUDY_CONFIG, "study-id": study, "round-delay": 4.0})
    finally:
        done.set()
        watcher.join(timeout=30)
    assert result.status == "finished:completed", result.logs[-3000:]
    assert revoked_at, "the revocation was never sent"

    record = exchange.studies.study(study)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 3
    revoked_address = revoked_key.address
    for round_ in (1, 2, 3):
        for h in hospitals:
            on_chain = exchange.studies.contribution_of(study, round_, h.node.address)
            expected = 12 if (h is hospitals[1] or round_ == 1) else 11
            assert on_chain.cohort_count == expected, (round_, h.node.address)
            kept = read_kept_cohort(h.node.dir, study, round_)
            recomputed = build_cohort(h.node, study, kept.block)
            assert recomputed.root == on_chain.cohort_root
            assert kept.root == "0x" + on_chain.cohort_root.hex()
            patients = {m.patient for m in kept.members}
            assert (revoked_address in patients) == (h is hospitals[0] and round_ == 1)
        saved = load_weights(models / f"study-{study}" / f"round-{round_}.npz")
        assert weights_hash(saved) == exchange.studies.round_model_hash(study, round_)
    final = load_weights(models / f"study-{study}" / "final.npz")
    assert weights_hash(final) == record.final_model_hash
    assert revoked_pid.startswith("TEST-A")


@pytest.mark.slow
def test_a_refusing_node_is_skipped_while_min_nodes_holds(exchange, actors, hospitals, study,  # type: ignore[no-untyped-def]
                                                          flower_run: FlowerRun) -> None:
    beta = hospitals[1]
    for key in beta.patients.values():  # every patient of Beta withdraws: Beta has nothing to train on
        exchange.consent.relay(actors.coordinator, exchange.consent.sign_revoke(key, Scope(purpose=Purpose.GRU)))

    result = flower_run({**STUDY_CONFIG, "study-id": study, "min-nodes": 1})
    assert result.status == "finished:completed", result.logs[-3000:]

    record = exchange.studies.study(study)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 3
    log = read_study_log(flower_run.models / f"study-{study}")
    alpha = hospitals[0].node.address
    for round_ in (1, 2, 3):
        assert exchange.studies.contribution_of(study, round_, alpha).cohort_count == 12
        assert exchange.studies.contribution_of(study, round_, beta.node.address) is None
        entry = log.rounds[round_ - 1]
        assert entry.contributors == [alpha]
        assert any("no consenting records" in reason for reason in entry.refused), entry.refused


@pytest.mark.slow
def test_rounds_record_epsilon_and_the_study_stops_at_the_budget(exchange, actors, hospitals,  # type: ignore[no-untyped-def]
                                                                   flower_run: FlowerRun) -> None:
    from tasks import load_weights, weights_hash

    study_id = running_study(exchange, actors, hospitals, rounds=3, privacy_budget=BUDGET_MILLI)

    result = flower_run({**STUDY_CONFIG, "study-id": study_id, "dp-noise-multiplier": NOISE, "dp-clipping-norm": 0.5,
                         "dp-delta": 1e-5})
    # "finished:failed" starts with "finished" too: a ServerApp that failed after the last round must not pass
    assert result.status == "finished:completed", result.logs[-3000:]

    record = exchange.studies.study(study_id)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 2
    folder = flower_run.models / f"study-{study_id}"
    log = read_study_log(folder)
    assert "round 3 would take epsilon" in log.stopped
    recorded = [r.privacy.milli_epsilon for r in log.rounds if r.privacy is not None]
    assert len(recorded) == len(log.rounds)
    assert all(m > 0 for m in recorded)
    assert record.privacy_spent == sum(recorded) <= BUDGET_MILLI
    # the chain's total covers the accountant's epsilon (rounded up to the milli-epsilon)
    assert log.privacy is not None
    assert record.privacy_spent / 1000 >= log.privacy.epsilon > record.privacy_spent / 1000 - 0.001
    events = [e for e in read_events(exchange.chain, [exchange.studies.address])
              if isinstance(e, RoundRecorded) and e.study_id == study_id]
    assert [e.privacy_spent for e in events] == recorded
    final = load_weights(folder / "final.npz")
    assert weights_hash(final) == record.final_model_hash
    # the model card states the budget and the epsilon as the chain holds them, and why it stopped
    card = read_card(folder / "model-card.json")
    assert card["privacy"]["differential_privacy"] is True
    assert card["privacy"]["budget_epsilon"] == BUDGET_MILLI / 1000
    assert card["privacy"]["epsilon_spent_on_chain"] == record.privacy_spent / 1000
    assert card["privacy"]["epsilon_accountant"] == log.privacy.epsilon
    assert card["privacy"]["noise_multiplier"] == NOISE
    assert [r["privacy_spent_epsilon"] for r in card["rounds"]] == [m / 1000 for m in recorded]
    assert "round 3 would take epsilon" in card["stopped_early"]
    assert (card["study"]["rounds_requested"], card["study"]["rounds_completed"]) == (3, 2)
