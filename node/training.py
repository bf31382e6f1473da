"""One federated round on a hospital node: check the study, build the cohort, train, anchor.

Called by the Flower ClientApp (``node/client_app.py``). Everything the node needs to know
about itself (its directory, key, chain) comes from the SuperNode's node config and the node's
own settings, never from what the coordinator sends: the coordinator only names the study, the
round, the task and the training hyper-parameters.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.studies import Decision, StudyStatus
from node.cohort import Cohort, build_cohort
from node.errors import NodeError
from node.node import Node

COHORTS_DIR = "cohorts"
#: Labels a sidecar may give, and the class each stands for.
LABELS = {"lesion": 1, "1": 1, "yes": 1, "normal": 0, "0": 0, "no": 0}


class StudyRefused(NodeError, PermissionError):
    """This node will not train for the study; the message says why."""


@dataclass(frozen=True)
class RoundResult:
    """What the node sends back, and what it anchored."""

    weights: list[np.ndarray]
    metrics: dict[str, float]
    cohort: Cohort
    update_hash: bytes
    tx_hash: str


def check_study(node: Node, study_id: int, task_code: str, block: int) -> None:
    """Refuse unless the study is running, this hospital approved it, and the task code matches.

    Raises:
        StudyRefused: naming the reason.
    """
    from tasks import task_code_hash

    studies = node.exchange.studies
    study = studies.study(study_id, block=block)
    if study.status != StudyStatus.RUNNING:
        raise StudyRefused(f"study {study_id} is {study.status.name}, not RUNNING: nothing to train")
    decision = studies.decision_of(study_id, node.address, block=block)
    if decision != Decision.APPROVED:
        raise StudyRefused(
            f"hospital {node.address} has not approved study {study_id} (decision {decision.name}): "
            "it trains on nothing"
        )
    local = task_code_hash(task_code)
    if local != study.task_code_hash:
        raise StudyRefused(
            f"task {task_code!r} here hashes to 0x{local.hex()}, study {study_id} was approved for "
            f"0x{study.task_code_hash.hex()}: refusing to run code the committee did not approve"
        )


def label_of(raw: str | None, record_id: str) -> int:
    """The class of a record's label; raise StudyRefused for a record without a usable label."""
    value = LABELS.get((raw or "").strip().lower())
    if value is None:
        raise StudyRefused(f"record {record_id} has label {raw!r}; expected one of {sorted(LABELS)}")
    return value


def train_round(
    node: Node,
    *,
    study_id: int,
    round_: int,
    task_code: str,
    weights: list[np.ndarray],
    epochs: int,
    lr: float,
    batch_size: int,
    proximal_mu: float,
) -> RoundResult:
    """Run one round for ``study_id`` on this node and anchor the contribution on chain."""
    import torch

    from tasks import TrainConfig, get_task, set_weights, train, weights_hash
    from tasks import get_weights as model_weights

    block = node.exchange.chain.block_number
    check_study(node, study_id, task_code, block)
    task = get_task(task_code)
    cohort = build_cohort(node, study_id, block)
    members = [m for m in cohort.members if m.kind == task.spec.kind]
    if not members:
        raise StudyRefused(f"no consenting records of the task's kind for study {study_id} at block {block}")
    inputs = torch.stack([task.load_record(node.dir / m.path, m.format) for m in members])
    labels = torch.tensor([label_of(m.label, m.record_id) for m in members])
    model = task.build_model()
    set_weights(model, weights)
    metrics = train(model, inputs, labels, TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size,
                                                       proximal_mu=proximal_mu, seed=round_), weights)
    new_weights = model_weights(model)
    update = weights_hash(new_weights)
    tx = node.exchange.studies.contribute(node.account, study_id, round_, cohort.root, cohort.count, update)
    _keep_cohort(node, cohort, round_)
    return RoundResult(new_weights, {k: float(v) for k, v in metrics.items()}, cohort, update, tx.tx_hash)


def _keep_cohort(node: Node, cohort: Cohort, round_: int) -> None:
    """Keep the round's cohort so patients can later be given inclusion proofs."""
    folder = node.dir / COHORTS_DIR / f"study-{cohort.study_id}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"round-{round_}.json"
    data = {
        "study_id": cohort.study_id,
        "round": round_,
        "block": cohort.block,
        "root": "0x" + cohort.root.hex(),
        "count": cohort.count,
        "members": [{"record_id": m.record_id, "kind": m.kind, "patient": m.patient} for m in cohort.members],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def read_kept_cohort(node: Node, study_id: int, round_: int) -> dict[str, object]:
    """The cohort this node kept for ``round_`` of ``study_id``."""
    path = node.dir / COHORTS_DIR / f"study-{study_id}" / f"round-{round_}.json"
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))
