"""End to end on the Flower deployment engine: Anvil + SuperLink + two SuperNodes, three rounds,
one revocation between rounds 1 and 2, and everything checked against the chain."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from contracts.datause import Purpose, Scope
from contracts.studies import StudyStatus
from node.cohort import build_cohort
from node.training import read_kept_cohort
from tests.federated.conftest import STUDY_CONFIG


@pytest.mark.slow
def test_three_rounds_with_a_revocation(tmp_path: Path, exchange, actors, hospitals, study, flower_run) -> None:
    from tasks import load_weights, weights_hash

    models = tmp_path / "models"
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
            kept = read_kept_cohort(h.node, study, round_)
            recomputed = build_cohort(h.node, study, int(kept["block"]))  # type: ignore[call-overload]
            assert recomputed.root == on_chain.cohort_root
            patients = {m["patient"] for m in kept["members"]}  # type: ignore[union-attr]
            assert (revoked_address in patients) == (h is hospitals[0] and round_ == 1)
        saved = load_weights(models / f"study-{study}" / f"round-{round_}.npz")
        assert weights_hash(saved) == exchange.studies.round_model_hash(study, round_)
    final = load_weights(models / f"study-{study}" / "final.npz")
    assert weights_hash(final) == record.final_model_hash
    assert revoked_pid.startswith("TEST-A")
