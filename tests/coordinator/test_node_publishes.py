"""A hospital node publishes its kept cohorts' proofs to a running coordinator (``metai-node publish-proofs``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak
from sqlalchemy import delete, select
from typer.testing import CliRunner

from contracts.datause import Kind, Purpose
from contracts.exchange import Exchange
from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from contracts.studies import StudyRequest
from coordinator.sealed_client import SealedLookupError, sealed_data_uses
from node.catalog import Patient, PatientKey
from node.cli import app
from node.enrol import enrol, issue_challenge
from node.kept_cohort import KeptCohort, KeptMember, kept_cohort_path
from node.node import Node
from tests.chain_steps import contribute
from tests.conftest import NODE_PASSPHRASE, Actors
from tests.coordinator.conftest import LiveService

SINOGRAM = int(Kind.CT_SINOGRAM)


def _kept_round(node: Node, exchange: Exchange, actors: Actors, study_id: int, round_: int,
                patients: list[int]) -> KeptCohort:
    """Anchor a cohort of one sinogram record per patient and keep it as the node keeps a trained round's."""
    members = tuple(KeptMember(keccak(text=f"record {i}").hex(), SINOGRAM, actors.patients[i].address)
                    for i in patients)
    tree = MerkleTree(cohort_leaf(m.record_id, m.kind, m.patient) for m in members)
    tx = contribute(exchange, node.account, study_id, round_, tree.root, len(members), keccak(text="update"))
    kept = KeptCohort(study_id, round_, tx.block_number, "0x" + tree.root.hex(), len(members), members)
    path = kept_cohort_path(node.dir, study_id, round_)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(kept.to_json()), encoding="utf-8")
    return kept


@pytest.fixture
def running_study(make_node: Callable[..., Node], exchange: Exchange, actors: Actors) -> tuple[Node, int]:
    node = make_node("Publishing Hospital")
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(node.address,), task_code_hash=keccak(text="t"),
        rounds=2))
    exchange.studies.approve(node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return node, study_id


def _publish(node: Node, url: str, *args: str, mode: str = "plain") -> Result:
    env = {"METAI_NODE_DIR": str(node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
           "METAI_NODE_RPC_URL": node.rpc_url, "METAI_NODE_COORDINATOR_URL": url, "METAI_NODE_PROOF_MODE": mode}
    return CliRunner().invoke(app, ["publish-proofs", *args], env=env)


def _data_uses(live: LiveService, patient: object) -> list[dict[str, object]]:
    account = patient
    client = httpx.Client(base_url=live.url)
    message = client.post("/v1/auth/challenge", json={"address": account.address}).json()["message"]  # type: ignore[attr-defined]
    signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()  # type: ignore[attr-defined]
    token = client.post("/v1/auth/sign-in", json={"message": message, "signature": signature}).json()["token"]
    uses: list[dict[str, object]] = client.get("/v1/me/data-uses", headers={"Authorization": f"Bearer {token}"}).json()
    return uses


def test_the_node_publishes_each_kept_round_once_and_patients_see_their_rounds(
        live_service: LiveService, running_study: tuple[Node, int], exchange: Exchange, actors: Actors) -> None:
    node, study_id = running_study
    _kept_round(node, exchange, actors, study_id, 1, [0, 1, 2])
    first = _publish(node, live_service.url)
    assert first.exit_code == 0, first.output
    assert f"study {study_id} round 1: 3 proofs for 3 patients published" in first.stdout
    assert kept_cohort_path(node.dir, study_id, 1).with_suffix(".published").exists()
    again = _publish(node, live_service.url)
    assert "nothing to publish" in again.stdout
    (use,) = _data_uses(live_service, actors.patients[1])
    assert use["hospital"] == node.address
    assert [r["included"] for r in use["rounds"]] == [True]  # type: ignore[union-attr]


def test_a_kept_cohort_altered_after_anchoring_is_not_published(
        live_service: LiveService, running_study: tuple[Node, int], exchange: Exchange, actors: Actors) -> None:
    node, study_id = running_study
    kept = _kept_round(node, exchange, actors, study_id, 1, [0, 1])
    path = kept_cohort_path(node.dir, study_id, 1)
    data = kept.to_json()
    data["members"][0]["patient"] = actors.patients[4].address  # type: ignore[index]
    path.write_text(json.dumps(data), encoding="utf-8")
    result = CliRunner().invoke(app, ["publish-proofs"], env={
        "METAI_NODE_DIR": str(node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE, "METAI_NODE_RPC_URL": node.rpc_url,
        "METAI_NODE_COORDINATOR_URL": live_service.url})
    assert result.exit_code == 1
    assert "the kept file was altered" in result.stderr
    assert not path.with_suffix(".published").exists()
    assert _data_uses(live_service, actors.patients[4]) == []


def _enrol(node: Node, actors: Actors, patients: list[int]) -> None:
    """Enrol each patient as the node does: its challenge signed with the patient's key (the key is kept)."""
    for i in patients:
        local_id = f"local patient {i}"
        with node.sessions() as session:
            node.vault.get_or_create(session, local_id)
            session.commit()
        text = issue_challenge(node, local_id).text
        signature = actors.patients[i].sign_message(encode_defunct(text=text)).signature.to_0x_hex()
        enrol(node, local_id, actors.patients[i].address, signature)


def test_a_sealed_node_publishes_envelopes_only_their_patient_opens_and_the_database_names_nobody(
        sealed_live_service: LiveService, running_study: tuple[Node, int], exchange: Exchange,
        actors: Actors) -> None:
    node, study_id = running_study
    _enrol(node, actors, [0, 1, 2])
    kept = _kept_round(node, exchange, actors, study_id, 1, [0, 1, 2])
    exchange.studies.record_round(actors.coordinator, study_id, 1, keccak(text="model 1"), [node.address])
    _kept_round(node, exchange, actors, study_id, 2, [1, 2])  # patient 0 revoked between the rounds
    first = _publish(node, sealed_live_service.url, mode="sealed")
    assert first.exit_code == 0, first.output
    assert f"study {study_id} round 1: 3 proofs sealed to 3 patients published" in first.stdout
    assert kept_cohort_path(node.dir, study_id, 2).with_suffix(".sealed").exists()
    assert "nothing to publish: every kept round is published sealed" in _publish(
        node, sealed_live_service.url, mode="sealed").stdout

    (use,) = sealed_data_uses(actors.patients[0], sealed_live_service.url)
    assert (use.study_id, use.hospital) == (study_id, node.address)
    assert [(r.round, r.included) for r in use.rounds] == [(1, True), (2, False)]
    (record,) = use.rounds[0].records
    assert record.record_id == keccak(text="record 0").hex()
    assert exchange.studies.in_cohort(study_id, 1, node.address, bytes.fromhex(record.leaf[2:]),
                                      [bytes.fromhex(p[2:]) for p in record.proof])
    assert sealed_data_uses(actors.patients[5], sealed_live_service.url) == []  # in no cohort: finds nothing

    # The service's database, every file of it, holds no patient's address in any form, nor a record id.
    database = sealed_live_service.harness.settings.database_url.removeprefix("sqlite:///")
    stored = b"".join(p.read_bytes() for p in Path(database).parent.glob(Path(database).name + "*")).lower()
    assert kept.root[2:].encode() in stored  # what was published is there
    for i in (0, 1, 2):
        address = actors.patients[i].address
        for form in (address.lower().encode(), address[2:].lower().encode(), bytes.fromhex(address[2:]).lower()):
            assert form not in stored
        assert keccak(text=f"record {i}").hex().encode() not in stored


def test_sealed_publication_names_the_patients_without_a_key_and_sends_nothing(
        sealed_live_service: LiveService, running_study: tuple[Node, int], exchange: Exchange,
        actors: Actors) -> None:
    node, study_id = running_study
    _enrol(node, actors, [0, 1, 2])
    with node.sessions() as session:  # patients 1 and 2 as a node before sealed proofs enrolled them
        session.execute(delete(PatientKey).where(PatientKey.address.in_([actors.patients[i].address for i in (1, 2)])))
        pseudonyms = sorted(session.scalars(select(Patient.pseudonym).where(
            Patient.address.in_([actors.patients[i].address for i in (1, 2)]))))
        session.commit()
    _kept_round(node, exchange, actors, study_id, 1, [0, 1, 2])
    result = _publish(node, sealed_live_service.url, mode="sealed")
    assert result.exit_code == 1
    assert "2 patient(s) in the rounds to publish have no public key on this node" in result.stderr
    assert all(p in result.stderr for p in pseudonyms)
    assert "Re-enrol each" in result.stderr
    assert not kept_cohort_path(node.dir, study_id, 1).with_suffix(".sealed").exists()
    assert not kept_cohort_path(node.dir, study_id, 1).with_suffix(".published").exists()
    assert sealed_data_uses(actors.patients[0], sealed_live_service.url) == []


def test_a_node_set_to_sealed_refuses_to_publish_plain(
        live_service: LiveService, running_study: tuple[Node, int], exchange: Exchange, actors: Actors) -> None:
    node, study_id = running_study
    _enrol(node, actors, [0])
    _kept_round(node, exchange, actors, study_id, 1, [0])
    result = _publish(node, live_service.url, "--plain", mode="sealed")
    assert result.exit_code != 0
    assert "never publishes plain ones; drop --plain" in result.stderr
    assert _data_uses(live_service, actors.patients[0]) == []


def test_a_plain_coordinator_refuses_a_sealed_publication_saying_which_mode_it_runs(
        live_service: LiveService, running_study: tuple[Node, int], exchange: Exchange, actors: Actors) -> None:
    node, study_id = running_study
    _enrol(node, actors, [0])
    _kept_round(node, exchange, actors, study_id, 1, [0])
    result = _publish(node, live_service.url, "--sealed")
    assert result.exit_code == 1
    assert "(409): METAI_COORDINATOR_PROOF_MODE is plain" in result.stderr
    with pytest.raises(SealedLookupError, match="METAI_COORDINATOR_PROOF_MODE is plain"):
        sealed_data_uses(actors.patients[0], live_service.url)
