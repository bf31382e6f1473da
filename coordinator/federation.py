"""The coordinator's side of a study: rounds over the Flower grid, checked and anchored.

Each round sends the global model to every connected node, collects the replies, keeps only
those whose update hash matches both the returned weights and the contribution the hospital
anchored on chain, aggregates them (FedAvg weighted by cohort size; FedProx when the nodes
are told a proximal term), evaluates the result on held-out synthetic data, and anchors the
round (model hash and contributors). A node that fails or refuses does not stop the study
while at least ``min_nodes`` contribute. At the end the final model is saved and its hash
anchored as the study's completion.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from contracts.exchange import Exchange
from contracts.studies import StudyStatus
from coordinator.errors import StudyAborted

log = logging.getLogger("metai.coordinator")


@dataclass(frozen=True)
class FederationConfig:
    """The run's tunables (``[tool.flwr.app.config]``)."""

    study_id: int
    task: str
    min_nodes: int
    local_epochs: int
    lr: float
    batch_size: int
    proximal_mu: float
    poll_interval: float
    round_timeout: float
    wait_nodes: float
    round_delay: float
    eval_examples: int
    eval_seed: int


@dataclass
class StudyLog:
    """What happened, round by round (written next to the models)."""

    study_id: int
    rounds: list[dict[str, object]] = field(default_factory=list)
    final_model_hash: str = ""


def run_study(grid: Grid, cfg: FederationConfig, exchange: Exchange, coordinator: LocalAccount,
              model_dir: Path) -> StudyLog:
    """Run every remaining round of ``cfg.study_id`` and complete it."""
    from tasks import evaluate, get_task, get_weights, set_weights, task_code_hash, weights_hash

    study = exchange.studies.study(cfg.study_id)
    if study.status != StudyStatus.RUNNING:
        raise StudyAborted(f"study {cfg.study_id} is {study.status.name}; start it before launching the run")
    if study.task_code_hash != task_code_hash(cfg.task):
        raise StudyAborted(f"task {cfg.task!r} is not the task study {cfg.study_id} was approved for")
    task = get_task(cfg.task)
    model = task.build_model()
    weights = get_weights(model)
    eval_inputs, eval_labels = task.synthetic_examples(cfg.eval_examples, cfg.eval_seed)
    out_dir = model_dir / f"study-{cfg.study_id}"
    out_dir.mkdir(parents=True, exist_ok=True)
    record = StudyLog(cfg.study_id)
    node_ids = _wait_for_nodes(grid, cfg.min_nodes, cfg.wait_nodes)
    for round_ in range(study.rounds_completed + 1, study.rounds + 1):
        if round_ > 1 and cfg.round_delay > 0:
            time.sleep(cfg.round_delay)
        started = time.monotonic()
        node_ids = sorted(set(node_ids) | set(grid.get_node_ids()))
        replies = _send_and_receive(grid, [_train_message(cfg, round_, weights, n) for n in node_ids],
                                    cfg.poll_interval, cfg.round_timeout)
        accepted, refused = _check(exchange, cfg.study_id, round_, replies)
        if len(accepted) < cfg.min_nodes:
            raise StudyAborted(f"round {round_}: {len(accepted)} of {cfg.min_nodes} required nodes contributed; "
                               f"refusals: {refused}")
        weights = _aggregate([w for _, w, _ in accepted], [n for _, _, n in accepted])
        set_weights(model, weights)
        metrics = evaluate(model, eval_inputs, eval_labels)
        model_hash = weights_hash(weights)
        _save(out_dir / f"round-{round_}.npz", weights)
        tx = exchange.studies.record_round(coordinator, cfg.study_id, round_, model_hash, [h for h, _, _ in accepted])
        record.rounds.append({
            "round": round_, "contributors": [h for h, _, _ in accepted], "cohort_counts": [n for _, _, n in accepted],
            "refused": refused, "model_hash": "0x" + model_hash.hex(), "eval": metrics, "block": tx.block_number,
            "seconds": round(time.monotonic() - started, 3),
        })
        log.info("study %s round %s: %s contributors, eval %s", cfg.study_id, round_, len(accepted), metrics)
    final_hash = weights_hash(weights)
    _save(out_dir / "final.npz", weights)
    exchange.studies.complete(coordinator, cfg.study_id, final_hash)
    record.final_model_hash = "0x" + final_hash.hex()
    (out_dir / "study.json").write_text(json.dumps(record.__dict__, indent=1, default=str), encoding="utf-8")
    return record


def _train_message(cfg: FederationConfig, round_: int, weights: list[np.ndarray], node_id: int) -> Message:
    config = ConfigRecord({
        "study-id": cfg.study_id, "round": round_, "task": cfg.task, "local-epochs": cfg.local_epochs,
        "lr": cfg.lr, "batch-size": cfg.batch_size, "proximal-mu": cfg.proximal_mu,
    })
    arrays = ArrayRecord({str(i): Array(w) for i, w in enumerate(weights)})
    return Message(content=RecordDict({"arrays": arrays, "config": config}), dst_node_id=node_id,
                   message_type=MessageType.TRAIN, group_id=str(round_))


def _check(exchange: Exchange, study_id: int, round_: int,
           replies: list[Message]) -> tuple[list[tuple[str, list[np.ndarray], int]], list[str]]:
    """Keep replies whose update hash matches the weights and the chain; say why others are out."""
    from tasks import weights_hash

    accepted: list[tuple[str, list[np.ndarray], int]] = []
    refused: list[str] = []
    for reply in replies:
        if reply.has_error():
            refused.append(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
            continue
        commitment = reply.content.config_records["commitment"]
        hospital = str(commitment["hospital"])
        arrays = reply.content.array_records["arrays"]
        weights = [arrays[k].numpy() for k in sorted(arrays.keys(), key=int)]
        on_chain = exchange.studies.contribution_of(study_id, round_, hospital)
        claimed = str(commitment["update-hash"])
        if "0x" + weights_hash(weights).hex() != claimed:
            refused.append(f"{hospital}: returned weights do not hash to its claimed update {claimed}")
        elif on_chain.cohort_count == 0 or "0x" + on_chain.cohort_root.hex() != str(commitment["cohort-root"]):
            refused.append(f"{hospital}: no matching contribution anchored on chain for round {round_}")
        else:
            accepted.append((hospital, weights, on_chain.cohort_count))
    return accepted, refused


def _aggregate(updates: list[list[np.ndarray]], counts: list[int]) -> list[np.ndarray]:
    total = float(sum(counts))
    return [
        np.sum([u[i] * (c / total) for u, c in zip(updates, counts, strict=True)], axis=0).astype(updates[0][i].dtype)
        for i in range(len(updates[0]))
    ]


def _save(path: Path, weights: list[np.ndarray]) -> None:
    from tasks import save_weights

    save_weights(path, weights)


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise StudyAborted(f"only {len(node_ids)} of {count} SuperNodes connected within {timeout} s")
        time.sleep(0.2)
    return node_ids


def _send_and_receive(grid: Grid, messages: list[Message], poll: float, timeout: float) -> list[Message]:
    # Grid.send_and_receive polls every 3 s; a shorter poll takes seconds off every round.
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        got: Iterable[Message] = grid.pull_messages(pending)
        for reply in got:
            replies.append(reply)
            pending.discard(reply.metadata.reply_to_message_id)
        if pending:
            time.sleep(poll)
    return replies
