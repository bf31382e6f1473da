"""The coordinator's side of a study: rounds over the Flower grid, checked and anchored.

Each round sends the global model to every connected node, collects the replies, keeps and
aggregates those that pass the checks of :mod:`coordinator.rounds` (the update hash must match
the returned weights and the contribution the hospital anchored on chain; FedAvg weighted by
cohort size, FedProx when the nodes are told a proximal term), evaluates the result on held-out
synthetic data, and anchors the round (model hash, contributors, privacy spent). A node that
fails or refuses does not stop the study while at least ``min_nodes`` contribute. Each round's
inputs and result go into the study's lineage bundle (coordinator/lineage.py) before the round
is anchored. At the end the final model is saved, the bundle's index written, and both hashes
anchored as the study's completion; the model card (coordinator/model_card.py) is written next
to it from what the chain then holds.

A study resumed after a restart (the chain records ``rounds_completed`` rounds) continues from
the last anchored round's model, read back from its bundle and checked against the hash on
chain, and keeps the earlier rounds' files and records.

Differential privacy (a study approved with a privacy budget) is central DP with client-side
clipping: each round asks the nodes to clip their update to ``dp_clipping_norm`` (Flower's
``fixedclipping_mod`` on the node, see node/client_app.py); :mod:`coordinator.privacy` adds the
noise and accounts the epsilon, and the study stops before a round that would take the total
over the budget.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from eth_account.signers.local import LocalAccount
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from contracts.exchange import Exchange
from contracts.studies import StudyStatus
from coordinator.errors import StudyAborted
from coordinator.lineage import (
    LineageError,
    begin_bundle,
    bundle_folder,
    finish_bundle,
    round_model_of,
    run_settings,
    write_round,
)
from coordinator.privacy import privacy_ledger
from coordinator.rounds import combine_round
from coordinator.run_config import FederationConfig
from coordinator.study_log import (
    HeldOut,
    RoundPrivacy,
    RoundRecord,
    StudyLog,
    StudyLogError,
    StudyPrivacy,
    final_model,
    read_study_log,
    round_model,
    study_folder,
)
from tasks.protocol import ARRAYS, CONFIG, TrainInstruction, layout_of, pack_weights

__all__ = ["FederationConfig", "run_study"]

log = logging.getLogger("metai.coordinator")


def run_study(grid: Grid, cfg: FederationConfig, exchange: Exchange, coordinator: LocalAccount,
              model_dir: Path) -> StudyLog:
    """Run every remaining round of ``cfg.study_id`` and complete it."""
    from tasks import evaluate, get_task, get_weights, set_weights, task_code_hash, weights_hash

    study = exchange.studies.study(cfg.study_id)
    if study.status != StudyStatus.RUNNING:
        raise StudyAborted(f"study {cfg.study_id} is {study.status.name}; start it before launching the run")
    if study.task_code_hash != task_code_hash(cfg.task):
        raise StudyAborted(f"task {cfg.task!r} is not the task study {cfg.study_id} was approved for")
    hospitals = len(exchange.studies.hospitals_of(cfg.study_id))
    ledger = privacy_ledger(cfg, study.privacy_budget, hospitals, study.rounds_completed)
    task = get_task(cfg.task)
    model = task.build_model()
    weights = get_weights(model)
    eval_inputs, eval_labels = task.synthetic_examples(cfg.eval_examples, cfg.eval_seed)
    out_dir = study_folder(model_dir, cfg.study_id)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = bundle_folder(out_dir)
    first = study.rounds_completed + 1
    try:
        begin_bundle(bundle, run_settings(cfg, hospitals), first, weights if first == 1 else None)
    except LineageError as exc:
        raise StudyAborted(f"study {cfg.study_id}: {exc}") from None
    if first > 1:
        weights = _resumed_weights(exchange, cfg.study_id, bundle, first - 1)
        set_weights(model, weights)
    record = _study_log(out_dir, cfg, first)
    recorded_milli = study.privacy_spent
    node_ids = _wait_for_nodes(grid, cfg.min_nodes, cfg.wait_nodes)
    last = first - 1
    for round_ in range(first, study.rounds + 1):
        if ledger is not None and not ledger.next_round_fits():
            record.stopped = (f"privacy budget: round {round_} would take epsilon from {ledger.epsilon():.3f} "
                              f"over the budget of {study.privacy_budget / 1000:g}")
            log.warning("study %s stops before round %s: %s", cfg.study_id, round_, record.stopped)
            break
        if round_ > 1 and cfg.round_delay > 0:
            time.sleep(cfg.round_delay)
        started = time.monotonic()
        node_ids = sorted(set(node_ids) | set(grid.get_node_ids()))
        replies = _send_and_receive(grid, [_train_message(cfg, round_, weights, n) for n in node_ids],
                                    cfg.poll_interval, cfg.round_timeout)
        received = time.monotonic()
        outcome = combine_round(exchange, cfg, round_, weights, replies)
        weights, accepted, refused = outcome.weights, outcome.accepted, outcome.refused
        set_weights(model, weights)
        metrics = evaluate(model, eval_inputs, eval_labels)
        model_hash = weights_hash(weights)
        spent_milli, epsilon = ledger.spend_round(recorded_milli) if ledger is not None else (0, 0.0)
        # Every file of the round is in place before the chain records it: a crash between the two
        # leaves files no anchor covers, which a resumed run drops (coordinator/lineage.py).
        write_round(bundle, round_, outcome, model_hash, milli_epsilon=spent_milli, epsilon=epsilon)
        _save(round_model(out_dir, round_), weights)
        aggregated = time.monotonic()
        block = None
        if cfg.anchor:
            tx = exchange.studies.record_round(coordinator, cfg.study_id, round_, model_hash,
                                               [c.hospital for c in accepted], spent_milli)
            block = tx.block_number
        recorded_milli += spent_milli
        last = round_
        ended = time.monotonic()
        record.rounds.append(RoundRecord(
            round=round_, contributors=[c.hospital for c in accepted],
            cohort_counts=[c.cohort_count for c in accepted], refused=refused,
            synthetic_counts={c.hospital: c.synthetic_count for c in accepted},
            model_hash="0x" + model_hash.hex(), eval=dict(metrics), block=block,
            privacy=RoundPrivacy(spent_milli, epsilon) if ledger is not None else None,
            seconds=round(ended - started, 4),
            server_seconds={"send_receive": round(received - started, 4),
                            "check": round(outcome.check_seconds, 4),
                            "aggregate_evaluate_save": round(aggregated - received - outcome.check_seconds, 4),
                            "record": round(ended - aggregated, 4)},
            node_seconds={c.hospital: c.seconds for c in accepted},
        ))
        record.write(out_dir)  # as the run goes, so the coordinator service can show each round's metrics live
        log.info("study %s round %s: %s contributors, eval %s%s", cfg.study_id, round_, len(accepted), metrics,
                 f", epsilon {epsilon:.3f}" if ledger is not None else "")
    if not record.rounds and study.rounds_completed == 0:
        raise StudyAborted(f"study {cfg.study_id}: no round could run ({record.stopped})")
    final_hash = weights_hash(weights)
    _save(final_model(out_dir), weights)
    lineage_hash = finish_bundle(bundle, weights, final_hash, chain_id=exchange.chain.chain_id,
                                 registry=exchange.studies.address, study_id=cfg.study_id, rounds=last)
    if cfg.anchor:
        exchange.studies.complete(coordinator, cfg.study_id, final_hash, lineage_hash)
    log.info("study %s lineage bundle %s: hash 0x%s", cfg.study_id, bundle, lineage_hash.hex())
    record.final_model_hash = "0x" + final_hash.hex()
    if ledger is not None:
        record.privacy = StudyPrivacy(epsilon=ledger.epsilon(), delta=cfg.dp_delta,
                                      milli_epsilon_recorded=recorded_milli, budget_milli_epsilon=study.privacy_budget,
                                      noise_multiplier=cfg.dp_noise_multiplier, clipping_norm=cfg.dp_clipping_norm)
    record.write(out_dir)
    if cfg.anchor:  # without anchoring (a benchmark) there is no chain record for the card to state
        _write_card(exchange, cfg, record, out_dir, weights)
    return record


def _resumed_weights(exchange: Exchange, study_id: int, bundle: Path, round_: int) -> list[np.ndarray]:
    """Round ``round_``'s model from the bundle, refused unless it hashes to the model the chain recorded."""
    from tasks import WeightsError, load_weights, weights_hash

    path = round_model_of(bundle, round_)
    try:
        weights = load_weights(path)
    except WeightsError as exc:
        raise StudyAborted(f"study {study_id} resumes after round {round_}, whose model cannot be read ({exc}); "
                           "restore the study's folder from a backup") from None
    anchored = exchange.studies.round_model_hash(study_id, round_)
    if weights_hash(weights) != anchored:
        raise StudyAborted(f"study {study_id}: {path} hashes to 0x{weights_hash(weights).hex()}, but the chain "
                           f"records 0x{anchored.hex()} for round {round_}; restore the study's folder from a backup")
    return weights


def _study_log(out_dir: Path, cfg: FederationConfig, first: int) -> StudyLog:
    """The study's record: a resumed study keeps the rounds before ``first`` from its ``study.json``."""
    record = StudyLog(cfg.study_id, task=cfg.task, held_out=HeldOut(cfg.eval_examples, cfg.eval_seed))
    if first > 1:
        try:
            kept = read_study_log(out_dir)
        except StudyLogError as exc:
            log.warning("study %s: its earlier rounds' record is lost (%s); study.json starts at round %s",
                        cfg.study_id, exc, first)
        else:
            record.rounds = [r for r in kept.rounds if r.round < first]
    return record


def _write_card(exchange: Exchange, cfg: FederationConfig, record: StudyLog, out_dir: Path,
                weights: list[np.ndarray]) -> None:
    from coordinator.model_card import write_model_card

    # Robustness patients come from another seed than the held-out set and every hospital's data.
    files = write_model_card(exchange, record, out_dir, weights,
                             robustness_seed=cfg.eval_seed + 1, robustness_patients=cfg.robustness_patients)
    log.info("study %s model card: %s (final held-out accuracy %s)", cfg.study_id, files.markdown,
             files.final_accuracy)


def _train_message(cfg: FederationConfig, round_: int, weights: list[np.ndarray], node_id: int) -> Message:
    instruction = TrainInstruction(
        study_id=cfg.study_id, round=round_, task=cfg.task, local_epochs=cfg.local_epochs, lr=cfg.lr,
        batch_size=cfg.batch_size, proximal_mu=cfg.proximal_mu, weight_layout=layout_of(weights),
        # Read by Flower's fixedclipping_mod on the node.
        clipping_norm=cfg.dp_clipping_norm if cfg.dp_noise_multiplier > 0 else None,
    )
    arrays = ArrayRecord(pack_weights(weights))  # one array: nodes read it with unpack_weights and the layout
    return Message(content=RecordDict({ARRAYS: arrays, CONFIG: ConfigRecord(instruction.to_config())}),
                   dst_node_id=node_id, message_type=MessageType.TRAIN, group_id=str(round_))


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
