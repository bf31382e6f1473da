"""The ClientApp's per-process runtime: the cohort a training message trained on lives only while it is handled."""

from __future__ import annotations

import hashlib
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, Metadata, RecordDict

import node.client_app as client_app
from node.client_app import NodeRuntime, make_app
from node.errors import NodeError
from tasks.protocol import layout_of, pack_weights

WEIGHTS = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.float32)]
#: A cohort manifest as the anchoring step returns it (its content is node/lineage.py's concern, tested there).
MANIFEST = '{"format":"metai-cohort/1","study_id":1,"round":1}'


def _train_message(message_id: str, **config: Any) -> Message:
    content = RecordDict({
        "arrays": ArrayRecord({"0": Array(pack_weights(WEIGHTS)[0])}),
        "config": ConfigRecord({"study-id": 7, "round": 1, "task": "t", "local-epochs": 1, "lr": 0.1,
                                "batch-size": 2, "proximal-mu": 0.0, "weight-layout": layout_of(WEIGHTS),
                                **config}),
    })
    metadata = Metadata(run_id=1, message_id=message_id, src_node_id=0, dst_node_id=1, reply_to_message_id="",
                        group_id="1", created_at=time.time(), ttl=3600.0, message_type=MessageType.TRAIN)
    return Message(content=content, metadata=metadata)


def _context() -> Context:
    return Context(run_id=1, node_id=1, node_config={"node-dir": "/nonexistent", "anchor": "false"},
                   state=RecordDict(), run_config={})


class _Runtime(NodeRuntime):
    """The runtime with a stand-in node (the handler only reads its address here)."""

    def node(self, context: Context) -> Any:
        return SimpleNamespace(address="0x" + "ab" * 20)


@pytest.fixture
def trained(monkeypatch: pytest.MonkeyPatch) -> list[list[np.ndarray]]:
    """train_local replaced by one that returns the weights it got, +1, and a cohort of two."""
    received: list[list[np.ndarray]] = []

    def train_local(node: Any, **kwargs: Any) -> Any:
        received.append(kwargs["weights"])
        cohort = SimpleNamespace(count=2, root=bytes(32), members=[SimpleNamespace(synthetic=True)] * 2)
        return SimpleNamespace(weights=[w + 1 for w in kwargs["weights"]], metrics={"loss": 0.5}, seconds={},
                               cohort=cohort)

    monkeypatch.setattr(client_app, "train_local", train_local)
    return received


def test_a_cohort_asked_for_without_training_names_the_mod_order() -> None:
    with pytest.raises(NodeError, match="the anchoring mod must wrap the training handler"):
        NodeRuntime().cohort_of(_train_message("m1"))


def test_the_cohort_is_dropped_when_the_message_is_handled_also_on_failure() -> None:
    runtime = NodeRuntime()
    msg = _train_message("m1")
    seen = []

    def handle() -> None:
        with runtime.handling(msg):
            runtime.trained_on(msg, SimpleNamespace())  # type: ignore[arg-type]
            seen.append(runtime.pending)
            raise RuntimeError("the anchoring failed")

    with pytest.raises(RuntimeError):
        handle()
    assert seen == [1]
    assert runtime.pending == 0


def test_the_app_anchors_the_weights_it_trained_in_their_order_and_keeps_nothing(
        trained: list[list[np.ndarray]], monkeypatch: pytest.MonkeyPatch) -> None:
    anchored: list[list[np.ndarray]] = []

    def anchor_contribution(node: Any, cohort: Any, round_: int, weights: list[np.ndarray], **kwargs: Any) -> Any:
        anchored.append(weights)
        return SimpleNamespace(update_hash=b"\x01" * 32, tx_hash="0xabc", seconds=0.0, manifest=MANIFEST)

    monkeypatch.setattr(client_app, "anchor_contribution", anchor_contribution)
    runtime = _Runtime()
    reply = make_app(runtime)(_train_message("m1"), _context())
    assert not reply.has_error(), reply.error
    assert [w.tolist() for w in trained[0]] == [w.tolist() for w in WEIGHTS]
    assert [w.tolist() for w in anchored[0]] == [(w + 1).tolist() for w in WEIGHTS]
    commitment = reply.content.config_records["commitment"]
    assert (commitment["update-hash"], commitment["tx"]) == ("0x" + "01" * 32, "0xabc")
    assert commitment["cohort-manifest"] == MANIFEST  # the anchored round's manifest travels with the reply
    assert runtime.pending == 0


def test_in_sealed_mode_only_the_manifest_s_hash_leaves_the_node(trained: list[list[np.ndarray]],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def anchor_contribution(*args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(update_hash=b"\x01" * 32, tx_hash="0xabc", seconds=0.0, manifest=MANIFEST)

    monkeypatch.setattr(client_app, "anchor_contribution", anchor_contribution)
    monkeypatch.setenv("METAI_NODE_PROOF_MODE", "sealed")
    reply = make_app(_Runtime())(_train_message("m1"), _context())
    assert not reply.has_error(), reply.error
    commitment = reply.content.config_records["commitment"]
    assert "cohort-manifest" not in commitment
    assert commitment["cohort-manifest-sha256"] == hashlib.sha256(MANIFEST.encode("utf-8")).hexdigest()
    assert all(MANIFEST not in str(v) for v in commitment.values())


def test_a_failure_after_training_leaves_no_cohort_behind(trained: list[list[np.ndarray]],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def anchor_contribution(*args: Any, **kwargs: Any) -> Any:
        raise NodeError("cannot reach the chain")

    monkeypatch.setattr(client_app, "anchor_contribution", anchor_contribution)
    runtime = _Runtime()
    with pytest.raises(NodeError, match="cannot reach the chain"):  # Flower turns it into an error reply
        make_app(runtime)(_train_message("m1"), _context())
    assert runtime.pending == 0
