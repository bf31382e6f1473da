"""The ClientApp with its mods, called in-process: clipping comes before anchoring, and a study
that promises differential privacy is not trained without clipping."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict

from contracts.datause import Kind, Purpose
from contracts.studies import StudyRequest
from node.client_app import app
from node.errors import NodeError
from node.kept_cohort import read_kept_cohort
from node.kept_reply import KeptReplyError, read_kept_reply
from node.training import StudyRefused, train_local
from tasks.protocol import layout_of, pack_weights, unpack_weights
from tests.conftest import NODE_PASSPHRASE
from tests.federated.conftest import TASK


@pytest.fixture(autouse=True)
def task_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages are made outside Flower's processes here: give them the identity Flower would."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)


def initial_weights() -> list[np.ndarray]:
    from tasks import get_task, get_weights

    return get_weights(get_task(TASK).build_model())


def train_message(study_id: int, weights: list[np.ndarray], clipping_norm: float | None) -> Message:
    config = ConfigRecord({"study-id": study_id, "round": 1, "task": TASK, "local-epochs": 1, "lr": 0.01,
                           "batch-size": 4, "proximal-mu": 0.0, "weight-layout": layout_of(weights)})
    if clipping_norm is not None:
        config["clipping_norm"] = clipping_norm
    arrays = ArrayRecord({"0": Array(pack_weights(weights)[0])})
    return Message(content=RecordDict({"arrays": arrays, "config": config}), dst_node_id=1,
                   message_type=MessageType.TRAIN)


def context_for(node_dir: Path, passphrase_file: Path) -> Context:
    node_config = {"node-dir": str(node_dir), "passphrase-file": str(passphrase_file)}
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})


def private_study(exchange, actors, hospitals) -> int:  # type: ignore[no-untyped-def]
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(hospitals[0].node.address,),
        task_code_hash=task_code_hash(TASK), rounds=2, privacy_budget=5000))
    exchange.studies.approve(hospitals[0].node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return study_id


def test_the_anchored_update_is_the_clipped_one(hospitals, exchange, actors, tmp_path: Path) -> None:
    from tasks import weights_hash

    study_id = private_study(exchange, actors, hospitals)
    node = hospitals[0].node
    secret = tmp_path / "passphrase"
    secret.write_text(NODE_PASSPHRASE, encoding="utf-8")
    sent = initial_weights()
    reply = app(train_message(study_id, sent, clipping_norm=0.01), context_for(node.dir, secret))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    returned = unpack_weights(reply.content.array_records["arrays"].to_numpy_ndarrays(), layout_of(sent))
    norm = math.sqrt(sum(float(np.sum((r.astype(np.float64) - s) ** 2)) for r, s in zip(returned, sent, strict=True)))
    assert norm == pytest.approx(0.01, rel=1e-3)  # lr 0.01 moves the weights much farther than 0.01
    commitment = reply.content.config_records["commitment"]
    assert commitment["update-hash"] == "0x" + weights_hash(returned).hex()
    on_chain = exchange.studies.contribution_of(study_id, 1, node.address)
    assert on_chain.cohort_count == 12
    assert "0x" + on_chain.cohort_root.hex() == commitment["cohort-root"]
    assert read_kept_cohort(node.dir, study_id, 1).count == 12
    assert reply.content.metric_records["metrics"]["anchor-seconds"] >= 0


def test_the_reply_carries_the_rounds_cohort_manifest(hospitals, exchange, actors, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from node.lineage import kept_manifest, manifest_json

    study_id = private_study(exchange, actors, hospitals)
    node = hospitals[0].node
    secret = tmp_path / "passphrase"
    secret.write_text(NODE_PASSPHRASE, encoding="utf-8")
    reply = app(train_message(study_id, initial_weights(), clipping_norm=1.0), context_for(node.dir, secret))
    assert not reply.has_error(), reply.error.reason if reply.has_error() else ""
    commitment = reply.content.config_records["commitment"]
    manifest = json.loads(commitment["cohort-manifest"])
    on_chain = exchange.studies.contribution_of(study_id, 1, node.address)
    assert (manifest["study_id"], manifest["round"], manifest["hospital"]) == (study_id, 1, node.address)
    assert (manifest["cohort_root"], manifest["cohort_block"]) == (commitment["cohort-root"], on_chain.cohort_block)
    assert manifest["dataset_ids"] == list(on_chain.dataset_ids)
    assert len(manifest["members"]) == len(manifest["enrolments"]) == 12
    assert commitment["cohort-manifest"] == manifest_json(kept_manifest(node, read_kept_cohort(node.dir, study_id, 1)))


def test_a_private_study_is_not_trained_without_clipping(hospitals, exchange, actors) -> None:
    study_id = private_study(exchange, actors, hospitals)
    node = hospitals[0].node
    with pytest.raises(StudyRefused, match="refusing to send an unclipped update"):
        train_local(node, study_id=study_id, round_=1, task_code=TASK, weights=initial_weights(), epochs=1,
                    lr=0.01, batch_size=4, proximal_mu=0.0)
    assert exchange.studies.contribution_of(study_id, 1, node.address) is None


def _one_hospital_study(hospitals, exchange, actors, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A running private study of the first hospital, its node, and a passphrase file for its ClientApp."""
    secret = tmp_path / "passphrase"
    secret.write_text(NODE_PASSPHRASE, encoding="utf-8")
    return private_study(exchange, actors, hospitals), hospitals[0].node, secret


def _arrays(reply: Message) -> list[np.ndarray]:
    return unpack_weights(reply.content.array_records["arrays"].to_numpy_ndarrays(), layout_of(initial_weights()))


def test_a_round_asked_again_gets_the_anchored_reply_without_a_second_contribution(  # type: ignore[no-untyped-def]
        hospitals, exchange, actors, tmp_path: Path) -> None:
    # The coordinator died with round 1 in flight; its resumed run asks round 1 again, from the same weights.
    study_id, node, secret = _one_hospital_study(hospitals, exchange, actors, tmp_path)
    sent = initial_weights()
    first = app(train_message(study_id, sent, clipping_norm=1.0), context_for(node.dir, secret))
    assert not first.has_error(), first.error.reason if first.has_error() else ""
    nonce = exchange.chain.w3.eth.get_transaction_count(node.address)
    again = app(train_message(study_id, sent, clipping_norm=1.0), context_for(node.dir, secret))
    assert not again.has_error(), again.error.reason if again.has_error() else ""
    assert exchange.chain.w3.eth.get_transaction_count(node.address) == nonce  # no transaction, so no training either
    for mine, kept in zip(_arrays(first), _arrays(again), strict=True):
        assert mine.dtype == kept.dtype
        assert np.array_equal(mine, kept)
    assert dict(again.content.config_records["commitment"]) == dict(first.content.config_records["commitment"])
    assert dict(again.content.metric_records["metrics"]) == dict(first.content.metric_records["metrics"])
    on_chain = exchange.studies.contribution_of(study_id, 1, node.address)
    assert again.content.config_records["commitment"]["update-hash"] == "0x" + on_chain.update_hash.hex()


def test_a_round_asked_again_from_other_weights_is_refused_with_the_reason(  # type: ignore[no-untyped-def]
        hospitals, exchange, actors, tmp_path: Path) -> None:
    study_id, node, secret = _one_hospital_study(hospitals, exchange, actors, tmp_path)
    sent = initial_weights()
    assert not app(train_message(study_id, sent, clipping_norm=1.0), context_for(node.dir, secret)).has_error()
    other = [w + 1 for w in sent]
    # Called in-process the error is raised; Flower's runtime sends it as the reply's error.
    with pytest.raises(NodeError, match="already anchored its update, trained from global weights 0x"):
        app(train_message(study_id, other, clipping_norm=1.0), context_for(node.dir, secret))


def test_a_node_whose_kept_reply_is_damaged_or_lost_cannot_send_it_nor_contribute_twice(  # type: ignore[no-untyped-def]
        hospitals, exchange, actors, tmp_path: Path) -> None:
    from node.kept_reply import kept_reply_path

    study_id, node, secret = _one_hospital_study(hospitals, exchange, actors, tmp_path)
    kept = kept_reply_path(node.dir, study_id)
    kept.parent.mkdir(parents=True, exist_ok=True)
    kept.write_bytes(b"not a kept reply")  # damaged before the round: it blocks nothing the chain does not hold
    sent = initial_weights()
    first = app(train_message(study_id, sent, clipping_norm=1.0), context_for(node.dir, secret))
    assert not first.has_error()
    assert kept.stat().st_mode & 0o777 == 0o600
    assert read_kept_reply(node.dir, study_id).round == 1
    kept.write_bytes(kept.read_bytes()[:200])  # cut after anchoring: not sent, and no second contribution either
    with pytest.raises(KeptReplyError, match="is not a kept reply"):
        app(train_message(study_id, sent, clipping_norm=1.0), context_for(node.dir, secret))
    kept.unlink()
    with pytest.raises(NodeError, match=r"the chain already holds this node's update 0x.* does not keep it"):
        app(train_message(study_id, sent, clipping_norm=1.0), context_for(node.dir, secret))
    on_chain = exchange.studies.contribution_of(study_id, 1, node.address)
    assert first.content.config_records["commitment"]["update-hash"] == "0x" + on_chain.update_hash.hex()
