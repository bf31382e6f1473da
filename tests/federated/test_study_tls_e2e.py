"""End to end over TLS with SuperNode authentication: deploy.federation brings up Anvil's study on a SuperLink
that admits only the two registered hospitals, runs two rounds, and refuses a third, unregistered SuperNode."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from eth_account import Account

from contracts.datause import Kind, Purpose
from contracts.manifest import write_manifest
from contracts.studies import StudyRequest, StudyStatus
from deploy.errors import ServiceStartError
from deploy.federation import Federation, NodeSpec
from deploy.flower import make_security, start_supernode
from tests.conftest import NODE_PASSPHRASE
from tests.federated.conftest import TASK

PASSPHRASE = "coordinator passphrase for tests"


@pytest.fixture
def two_round_study(exchange, actors, hospitals) -> int:  # type: ignore[no-untyped-def]
    """The fixture study's twin with two rounds: requested, approved by both hospitals, started."""
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(h.node.address for h in hospitals),
        task_code_hash=task_code_hash(TASK), rounds=2))
    for h in hospitals:
        exchange.studies.approve(h.node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return int(study_id)


@pytest.mark.slow
def test_two_rounds_over_tls_and_an_unregistered_supernode_is_refused(
    tmp_path: Path, exchange, actors, hospitals, two_round_study: int  # type: ignore[no-untyped-def]
) -> None:
    from tasks import load_weights, weights_hash

    study = two_round_study
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
        secret.chmod(0o600)
        nodes.append(NodeSpec(h.node.dir, secret))

    with Federation.up(tmp_path / "federation", nodes, tls=True,
                       coordinator_env={f"METAI_COORDINATOR_{k}": v for k, v in coordinator.items()}) as federation:
        assert federation.security is not None
        assert [n.name for n in federation.supernodes] == [h.node.address for h in hospitals]
        # A third SuperNode that trusts the federation's CA but whose key was never registered.
        rogue = dataclasses.replace(federation.security,
                                    supernode_keys=make_security(tmp_path / "rogue", ["rogue"]).supernode_keys)
        with pytest.raises(ServiceStartError, match=r"exited[\s\S]*Exit Code: 305[\s\S]*Failed to activate SuperNode"):
            start_supernode(tmp_path / "rogue-run", federation.superlink, "rogue", node_config={}, security=rogue)
        link_log = federation.superlink.log_file.read_text(errors="replace")
        assert "No SuperNode found with the given public key" in link_log

        assert [a.name for a in federation.signers] == [h.node.address for h in hospitals]
        result = federation.launch(study, {"task": TASK, "min-nodes": 2, "local-epochs": 1, "eval-examples": 32,
                                           "round-delay": 0.0}, timeout=600)
        signer_logs = [a.log_file.read_text() for a in federation.signers]
    assert result.status == "finished:completed", result.logs[-3000:]
    # each hospital's key was unlocked once, by its signing agent, which signed nothing it should not
    assert all("listening on" in text and "refused" not in text for text in signer_logs)
    assert all(not a.socket.parent.exists() for a in federation.signers)

    record = exchange.studies.study(study)
    assert record.status == StudyStatus.COMPLETED
    assert record.rounds_completed == 2
    for round_ in (1, 2):
        for h in hospitals:
            assert exchange.studies.contribution_of(study, round_, h.node.address).cohort_count == 12, (round_, h)
        saved = load_weights(models / f"study-{study}" / f"round-{round_}.npz")
        assert weights_hash(saved) == exchange.studies.round_model_hash(study, round_)
    assert weights_hash(load_weights(models / f"study-{study}" / "final.npz")) == record.final_model_hash
