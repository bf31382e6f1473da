"""The same study app on Flower's simulation engine (Ray, in this process): a one-round study, completed on chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.studies import StudyStatus
from deploy.simulation import simulate
from tests.federated.conftest import STUDY_CONFIG, running_study


@pytest.mark.slow
def test_a_study_runs_to_completion_on_the_simulation_engine(
    tmp_path: Path, exchange, actors, hospitals, node_specs, coordinator_env  # type: ignore[no-untyped-def]
) -> None:
    from tasks import load_weights, weights_hash

    study = running_study(exchange, actors, hospitals, rounds=1)
    models = tmp_path / "models"
    result = simulate(node_specs, study, {**STUDY_CONFIG, "round-delay": 0.0, "wait-nodes": 60.0},
                      coordinator_env=coordinator_env)

    assert result.run_config["study-id"] == study
    record = exchange.studies.study(study)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 1
    for h in hospitals:
        assert exchange.studies.contribution_of(study, 1, h.node.address).cohort_count == 12
    assert weights_hash(load_weights(models / f"study-{study}" / "final.npz")) == record.final_model_hash
