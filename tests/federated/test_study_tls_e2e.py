"""End to end over TLS with SuperNode authentication: deploy.federation brings up Anvil's study on a SuperLink
that admits only the two registered hospitals, runs two rounds, and refuses a third, unregistered SuperNode."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from contracts.studies import StudyStatus
from deploy.errors import ServiceStartError
from deploy.federation import Federation
from deploy.flower import make_security, start_supernode
from tests.federated.conftest import STUDY_CONFIG, running_study


@pytest.mark.slow
def test_two_rounds_over_tls_and_an_unregistered_supernode_is_refused(
    tmp_path: Path, exchange, actors, hospitals, node_specs, coordinator_env  # type: ignore[no-untyped-def]
) -> None:
    from tasks import load_weights, weights_hash

    study = running_study(exchange, actors, hospitals, rounds=2)
    models = tmp_path / "models"
    with Federation.up(tmp_path / "federation", node_specs, tls=True, coordinator_env=coordinator_env) as federation:
        assert federation.security is not None
        assert [n.name for n in federation.supernodes] == [h.node.address for h in hospitals]
        assert sorted(federation.security.supernode_keys) == sorted(h.node.address for h in hospitals)
        assert Federation.load(federation.run_dir).security == federation.security  # a later `study launch` finds it
        # A third SuperNode that trusts the federation's CA but whose key was never registered.
        rogue = dataclasses.replace(federation.security,
                                    supernode_keys=make_security(tmp_path / "rogue", ["rogue"]).supernode_keys)
        with pytest.raises(ServiceStartError, match=r"exited[\s\S]*Exit Code: 305[\s\S]*Failed to activate SuperNode"):
            start_supernode(tmp_path / "rogue-run", federation.superlink, "rogue", node_config={}, security=rogue)
        link_log = federation.superlink.log_file.read_text(errors="replace")
        assert "No SuperNode found with the given public key" in link_log

        assert [a.name for a in federation.signers] == [h.node.address for h in hospitals]
        result = federation.launch(study, {**STUDY_CONFIG, "round-delay": 0.0}, timeout=600)
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
