"""A hospital node publishes its kept cohorts' proofs to a running coordinator (``metai-node publish-proofs``)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from click.testing import Result
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak
from typer.testing import CliRunner

from contracts.datause import Kind, Purpose
from contracts.exchange import Exchange
from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from contracts.studies import StudyRequest
from node.cli import app
from node.kept_cohort import KeptCohort, KeptMember, kept_cohort_path
from node.node import Node
from tests.conftest import NODE_PASSPHRASE, Actors
from tests.coordinator.conftest import LiveService

SINOGRAM = int(Kind.CT_SINOGRAM)


def _kept_round(node: Node, exchange: Exchange, actors: Actors, study_id: int, round_: int,
                patients: list[int]) -> KeptCohort:
    """Anchor a cohort of one sinogram record per patient and keep it as the node keeps a trained round's."""
    members = tuple(KeptMember(keccak(text=f"record {i}").hex(), SINOGRAM, actors.patients[i].address)
                    for i in patients)
    tree = MerkleTree(cohort_leaf(m.record_id, m.kind, m.patient) for m in members)
    tx = exchange.studies.contribute(node.account, study_id, round_, tree.root, len(members), keccak(text="update"))
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


def _publish(node: Node, url: str) -> Result:
    env = {"METAI_NODE_DIR": str(node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
           "METAI_NODE_RPC_URL": node.rpc_url, "METAI_NODE_COORDINATOR_URL": url}
    return CliRunner().invoke(app, ["publish-proofs"], env=env, catch_exceptions=False)


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
