"""Building blocks of the coordinator's round tests: a running study, anchored contributions,
node replies as Flower delivers them (real ``Message`` objects with the metadata a SuperLink sets),
and a grid whose nodes answer with such replies, to run whole studies through ``run_study``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MessageType, Metadata, MetricRecord, RecordDict

from contracts.datause import Kind, Purpose
from contracts.exchange import Exchange
from contracts.studies import StudyRequest
from coordinator.run_config import FederationConfig
from tasks.protocol import unpack_weights
from tests.chain_steps import contribute

#: Cohort roots the hospitals anchor; any non-zero 32 bytes will do for the coordinator.
ROOT_A = keccak(text="synthetic cohort MARK-0007-ZQX")
ROOT_B = keccak(text="synthetic cohort MARK-0011-QJW")


def config(study_id: int, *, min_nodes: int = 1, mu: float = 0.0, noise: float = 0.0, clipping: float = 1.0,
           anchor: bool = True) -> FederationConfig:
    """The run's settings for ``study_id`` (anchoring on unless told)."""
    cfg = FederationConfig(study_id=study_id, task="ct-sinogram-lesion-v1", min_nodes=min_nodes, local_epochs=1,
                           lr=0.01, batch_size=8, proximal_mu=mu, poll_interval=0.2, round_timeout=60,
                           wait_nodes=60, round_delay=0, eval_examples=8, eval_seed=1, dp_noise_multiplier=noise,
                           dp_clipping_norm=clipping, dp_delta=1e-5)
    return replace(cfg, anchor=anchor)


def running_study(exchange: Exchange, researcher: LocalAccount, coordinator: LocalAccount,
                  hospitals: list[LocalAccount], *, rounds: int = 2, privacy_budget: int = 0,
                  task_code_hash: bytes = keccak(text="task code")) -> int:
    """A study naming ``hospitals``: requested, approved by each, started."""
    study_id, _ = exchange.studies.request(researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(h.address for h in hospitals),
        task_code_hash=task_code_hash, rounds=rounds, privacy_budget=privacy_budget))
    for h in hospitals:
        exchange.studies.approve(h, study_id)
    exchange.studies.start(coordinator, study_id)
    return int(study_id)


def update_hash(weights: list[np.ndarray]) -> bytes:
    """The hash a node anchors for ``weights``."""
    from tasks import weights_hash

    return weights_hash(weights)


def anchor(exchange: Exchange, hospital: LocalAccount, study_id: int, round_: int, weights: list[np.ndarray],
           count: int, root: bytes = ROOT_A) -> None:
    """Commit ``hospital``'s contribution on chain, the contract call a node makes before it replies."""
    contribute(exchange, hospital, study_id, round_, root, count, update_hash(weights))


def _metadata(node_id: int, round_: int) -> Metadata:
    return Metadata(run_id=1, message_id=f"reply-{node_id}-{round_}", src_node_id=node_id, dst_node_id=0,
                    reply_to_message_id=f"train-{node_id}-{round_}", group_id=str(round_), created_at=time.time(),
                    ttl=3600.0, message_type=MessageType.TRAIN)


def reply(hospital: str, weights: list[np.ndarray], count: int, *, root: bytes = ROOT_A,
          claimed_hash: bytes | None = None, node_id: int = 1, round_: int = 1, manifest: str | None = None,
          manifest_sha256: str | None = None) -> Message:
    """A node's train reply: its weights, timings and commitment (claiming the weights' own hash unless told,
    carrying the cohort manifest, or a sealed manifest's hash, if one is given)."""
    claimed = update_hash(weights) if claimed_hash is None else claimed_hash
    commitment: dict[str, int | str] = {"hospital": hospital, "cohort-root": "0x" + root.hex(), "cohort-count": count,
                                        "update-hash": "0x" + claimed.hex(), "synthetic-count": 0}
    if manifest is not None:
        commitment["cohort-manifest"] = manifest
    if manifest_sha256 is not None:
        commitment["cohort-manifest-sha256"] = manifest_sha256
    content = RecordDict({
        # Packed as a node packs them (tasks.protocol.pack_weights), whatever their dtype: a test may send
        # weights no honest node would.
        "arrays": ArrayRecord({"0": Array(np.concatenate([w.reshape(-1) for w in weights]))}),
        "metrics": MetricRecord({"train-seconds": 0.25, "cohort-count": count}),
        "commitment": ConfigRecord(commitment),  # type: ignore[arg-type]
    })
    return Message(content=content, metadata=_metadata(node_id, round_))


def manifest(study_id: int, round_: int, hospital: str, root: bytes, count: int) -> str:
    """A cohort manifest naming the contribution (``count`` members with made-up record ids; no proofs)."""
    import json

    members = [{"record_id": keccak(text=f"{hospital} record {i}").hex(), "kind": int(Kind.CT_SINOGRAM),
                "patient": hospital, "dataset_id": 1, "dataset_proof": []} for i in range(count)]
    return json.dumps({"format": "metai-cohort/1", "chain_id": 31337, "study_registry": "0x" + "00" * 20,
                       "study_id": study_id, "round": round_, "hospital": hospital, "cohort_block": 1,
                       "cohort_root": "0x" + root.hex(), "dataset_ids": [1], "members": members, "enrolments": []})


#: A node's answer to a train message: (node id, round, model sent) -> its reply, or None for no reply.
Answer = Callable[[int, int, list[np.ndarray]], Message | None]


class ScriptedGrid:
    """The grid ``run_study`` drives, with nodes that answer each train message through ``answer``.

    Message ids are ``train-<node>-<round>``, the ``reply_to_message_id`` of :func:`reply`'s metadata.
    """

    def __init__(self, node_ids: list[int], answer: Answer) -> None:
        self.node_ids = node_ids
        self.answer = answer
        self.sent: dict[int, list[np.ndarray]] = {}  # round -> the model sent
        self._replies: dict[str, Message] = {}

    def get_node_ids(self) -> list[int]:
        return list(self.node_ids)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            node, round_ = message.metadata.dst_node_id, int(message.metadata.group_id)
            layout = message.content.config_records["config"]["weight-layout"]
            sent = unpack_weights(message.content.array_records["arrays"].to_numpy_ndarrays(), layout)
            self.sent[round_] = sent
            answered = self.answer(node, round_, sent)
            if answered is not None:
                self._replies[f"train-{node}-{round_}"] = answered
            ids.append(f"train-{node}-{round_}")
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]


def error_reply(reason: str, *, node_id: int = 9, round_: int = 1) -> Message:
    """A node's reply carrying an error instead of content."""
    return Message(error=Error(code=0, reason=reason), metadata=_metadata(node_id, round_))
