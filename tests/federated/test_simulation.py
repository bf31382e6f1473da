"""The same study app on Flower's simulation engine (Ray, in this process): a one-round study, completed on chain."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from contracts.datause import Kind, Purpose
from contracts.manifest import write_manifest
from contracts.studies import StudyRequest, StudyStatus
from deploy.federation import NodeSpec
from deploy.simulation import simulate
from tests.conftest import NODE_PASSPHRASE
from tests.federated.conftest import TASK

PASSPHRASE = "coordinator passphrase for tests"


@pytest.fixture
def one_round_study(exchange, actors, hospitals) -> int:  # type: ignore[no-untyped-def]
    """A one-round study of both hospitals: requested, approved, started."""
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(h.node.address for h in hospitals),
        task_code_hash=task_code_hash(TASK), rounds=1))
    for h in hospitals:
        exchange.studies.approve(h.node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return int(study_id)


@pytest.mark.slow
def test_a_study_runs_to_completion_on_the_simulation_engine(
    tmp_path: Path, exchange, actors, hospitals, one_round_study: int  # type: ignore[no-untyped-def]
) -> None:
    from tasks import load_weights, weights_hash

    study = one_round_study
    key_file = tmp_path / "coordinator-key.json"
    key_file.write_text(json.dumps(Account.encrypt(actors.coordinator.key, PASSPHRASE)))
    manifest = tmp_path / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    models = tmp_path / "models"
    coordinator = {"RPC_URL": exchange.chain.rpc_url, "MANIFEST": str(manifest), "KEY_FILE": str(key_file),
                   "PASSPHRASE": PASSPHRASE, "MODEL_DIR": str(models)}
    nodes = []
    for h in hospitals:
        secret = tmp_path / f"{h.node.address}.passphrase"
        secret.write_text(NODE_PASSPHRASE)
        nodes.append(NodeSpec(h.node.dir, secret))

    result = simulate(nodes, study, {"task": TASK, "min-nodes": 2, "local-epochs": 1, "eval-examples": 32,
                                     "round-delay": 0.0, "wait-nodes": 60.0},
                      coordinator_env={f"METAI_COORDINATOR_{k}": v for k, v in coordinator.items()})

    assert result.run_config["study-id"] == study
    record = exchange.studies.study(study)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 1
    for h in hospitals:
        assert exchange.studies.contribution_of(study, 1, h.node.address).cohort_count == 12
    assert weights_hash(load_weights(models / f"study-{study}" / "final.npz")) == record.final_model_hash
