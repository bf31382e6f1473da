"""One federated round on a hospital node: check the study, build the cohort, train, anchor.

Called by the Flower ClientApp (``node/client_app.py``). Everything the node needs to know
about itself (its directory, key, chain) comes from the SuperNode's node config and the node's
own settings, never from what the coordinator sends: the coordinator only names the study, the
round, the task and the training hyper-parameters.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from contracts.studies import Decision, StudyStatus
from node.cohort import Cohort, build_cohort
from node.errors import NodeError
from node.kept_cohort import keep_cohort
from node.lineage import cohort_manifest, keep_sent_manifest, manifest_json
from node.node import Node

_log = logging.getLogger(__name__)

#: Labels a sidecar may give, and the class each stands for.
LABELS = {"lesion": 1, "1": 1, "yes": 1, "normal": 0, "0": 0, "no": 0}


class StudyRefused(NodeError, PermissionError):
    """This node will not train for the study; the message says why."""


@dataclass(frozen=True)
class TrainedRound:
    """A round trained on this node's cohort, not yet anchored."""

    weights: list[np.ndarray]
    metrics: dict[str, float]
    cohort: Cohort
    #: Seconds spent: ``check`` (study on chain), ``cohort`` (consents on chain), ``load``, ``train``.
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Anchored:
    """A contribution anchored on chain (or, with anchoring off, only hashed)."""

    update_hash: bytes
    tx_hash: str
    seconds: float
    #: The round's cohort manifest, JSON (:mod:`node.lineage`); None when nothing was anchored.
    manifest: str | None = None


@dataclass(frozen=True)
class RoundResult:
    """What the node sends back, and what it anchored."""

    weights: list[np.ndarray]
    metrics: dict[str, float]
    cohort: Cohort
    update_hash: bytes
    tx_hash: str
    #: The round's cohort manifest, JSON.
    manifest: str | None = None


def check_study(node: Node, study_id: int, task_code: str, block: int, *, clipping_norm: float | None = None) -> None:
    """Refuse unless the study is running, this hospital approved it, and the task code matches.

    A study approved with a privacy budget is trained only when the round's message asks for
    the update to be clipped (``clipping_norm``): without clipping, the coordinator's noise
    would not give the differential privacy the hospital approved.

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
    if study.privacy_budget > 0 and clipping_norm is None:
        raise StudyRefused(
            f"study {study_id} was approved with differential privacy (budget epsilon "
            f"{study.privacy_budget / 1000:g}) but this round does not ask for clipped updates: "
            "refusing to send an unclipped update"
        )


def label_of(raw: str | None, record_id: str) -> int:
    """The class of a record's label; raise StudyRefused for a record without a usable label.

    The refusal's text travels to the SuperLink and the coordinator (Flower sends an exception's
    message as the reply's error), so it names the record, never the label: a labels sidecar with
    a shifted column would otherwise send a name out of the hospital.
    """
    value = LABELS.get((raw or "").strip().lower())
    if value is None:
        raise StudyRefused(
            f"record {record_id} has no usable label (not one of {sorted(LABELS)}); correct its row in the "
            "labels sidecar and ingest again"
        )
    return value


def train_local(
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
    clipping_norm: float | None = None,
) -> TrainedRound:
    """Check the study, build the cohort at the current block and train on it (no chain write).

    Raises:
        StudyRefused: the study is not to be trained here, or no record may be used.
    """
    import torch

    from tasks import TrainConfig, get_task, set_weights, train
    from tasks import get_weights as model_weights

    seconds: dict[str, float] = {}
    started = time.perf_counter()
    block = node.exchange.chain.block_number
    check_study(node, study_id, task_code, block, clipping_norm=clipping_norm)
    task = get_task(task_code)
    seconds["check"] = (now := time.perf_counter()) - started
    cohort = build_cohort(node, study_id, block)
    left_out = ""
    if cohort.unregistered:
        left_out = (f"{cohort.unregistered} records of enrolled patients of the study's kinds are in no dataset "
                    f"this node registered on chain by block {block} and were left out: register the drafts with "
                    "`metai-node register DRAFT` (`metai-node datasets` lists them)")
        _log.warning("study %s round %s: %s", study_id, round_, left_out)
    members = [m for m in cohort.members if m.kind == task.spec.kind]
    if not members:
        raise StudyRefused(f"no consenting records of the task's kind for study {study_id} at block {block}"
                           + (f"; {left_out}" if left_out else ""))
    seconds["cohort"] = (then := time.perf_counter()) - now
    inputs = torch.stack([task.load_record(node.dir / m.path, m.format) for m in members])
    labels = torch.tensor([label_of(m.label, m.record_id) for m in members])
    seconds["load"] = (now := time.perf_counter()) - then
    model = task.build_model()
    set_weights(model, weights)
    cpu = time.thread_time()
    metrics = train(model, inputs, labels, TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size,
                                                       proximal_mu=proximal_mu, seed=round_), weights)
    seconds["train"] = time.perf_counter() - now
    # This thread's CPU time in training (torch's work with one thread): below the wall time above
    # by what the node waited for a core.
    seconds["train_cpu"] = time.thread_time() - cpu
    return TrainedRound(model_weights(model), {k: float(v) for k, v in metrics.items()}, cohort, seconds)


def anchor_contribution(node: Node, cohort: Cohort, round_: int, weights: list[np.ndarray], *,
                        anchor: bool = True, signer: Any = None) -> Anchored:
    """Hash the update this node sends; anchor it with the cohort on chain, keep the cohort and its manifest,
    give the manifest.

    The contribution names the block the cohort's consents were read at and the registered
    datasets its records come from. The round's cohort manifest is made before anything is
    written, so a cohort the node could not account for is never anchored.

    ``signer`` signs the contribution in place of the node's own unlocked key (a
    :class:`node.signer.RemoteSigner`). With ``anchor=False`` (the node's own ``anchor``
    setting, for measuring the anchoring overhead) nothing is written on chain, no cohort is
    kept and no manifest made.

    Raises:
        LineageError: the manifest cannot be made (nothing was anchored).
        ChainError: the contribution was refused.
    """
    from tasks import weights_hash

    started = time.perf_counter()
    update = weights_hash(weights)
    if not anchor:
        return Anchored(update, "", time.perf_counter() - started)
    manifest = manifest_json(cohort_manifest(node, cohort, round_))
    # Kept before anchoring: in sealed mode only its hash leaves the node, so these bytes must never be lost.
    keep_sent_manifest(node.dir, cohort.study_id, round_, manifest)
    account = node.account if signer is None else signer
    tx = node.exchange.studies.contribute(account, cohort.study_id, round_, cohort.root, cohort.count, cohort.block,
                                          cohort.dataset_ids, update)
    keep_cohort(node.dir, cohort, round_)
    return Anchored(update, tx.tx_hash, time.perf_counter() - started, manifest)


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
    trained = train_local(node, study_id=study_id, round_=round_, task_code=task_code, weights=weights,
                          epochs=epochs, lr=lr, batch_size=batch_size, proximal_mu=proximal_mu)
    anchored = anchor_contribution(node, trained.cohort, round_, trained.weights)
    return RoundResult(trained.weights, trained.metrics, trained.cohort, anchored.update_hash, anchored.tx_hash,
                       anchored.manifest)
