"""A study as the chain records it, joined with the coordinator's log: status, rounds, lineage.

A study's view is replayed from its events as the service's :class:`ChainIndex` holds them (at
most ``chain_lag`` seconds old); its lineage reads them from the chain again, filtered by the
study's id (``StudyRegistry`` indexes it). The coordinator's ``study.json`` adds what the chain
does not hold: each round's held-out metrics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.datause import Purpose
from contracts.enums import Decision, StudyStatus
from contracts.events import ChainEvent, ContributionRecorded, RoundRecorded, StudyCompleted, read_events
from contracts.exchange import Exchange
from coordinator.chain_index import ChainIndex, StudyState
from coordinator.errors import CoordinatorError
from coordinator.models.consents import PURPOSE_WORDS, kind_names
from coordinator.models.studies import ContributionPublic, DecisionPublic, RoundPublic, StudyPublic, StudySummary
from coordinator.study_log import FILE_NAME, StudyLogError, read_study_log, study_folder

LINEAGE_FORMAT = "metai-study-lineage"
LINEAGE_VERSION = 1
_STATUS = {StudyStatus.REQUESTED: "requested", StudyStatus.DECLINED: "declined", StudyStatus.RUNNING: "running",
           StudyStatus.COMPLETED: "completed"}
_DECISION = {Decision.PENDING: "pending", Decision.APPROVED: "approved", Decision.DECLINED: "declined"}


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def id_topic(value: int) -> str:
    """A uint256 as an indexed-argument topic, for log filters."""
    return "0x" + value.to_bytes(32, "big").hex()


def purpose_words(purpose: Purpose, disease: int) -> str:
    """A study's purpose in plain words."""
    return PURPOSE_WORDS[purpose] + (f" (disease code {disease})" if purpose == Purpose.DS else "")


def study_events(exchange: Exchange, study_id: int) -> list[ChainEvent]:
    """Every event of study ``study_id`` in chain order."""
    return read_events(exchange.chain, [exchange.studies.address], from_block=exchange.deployment.deploy_block,
                       topics=[None, id_topic(study_id)])


def _metrics(model_dir: Path, study_id: int) -> dict[int, dict[str, float]]:
    path = study_folder(model_dir, study_id) / FILE_NAME
    if not path.exists():
        return {}
    try:
        log = read_study_log(path)
    except StudyLogError:
        return {}  # written as the run goes; a reader may catch it mid-replace on some filesystems
    return {r.round: dict(r.eval) for r in log.rounds}


class StudyNotFound(CoordinatorError, LookupError):
    """No study with this id was requested on chain."""


def study_public(index: ChainIndex, study_id: int, model_dir: Path, task_names: Mapping[bytes, str]) -> StudyPublic:
    """Study ``study_id`` with its decisions, rounds and (from the coordinator's log) each round's metrics.

    Raises:
        StudyNotFound: no such study was requested.
    """
    state = index.study(study_id)
    if state is None:
        raise StudyNotFound(f"study {study_id} does not exist")
    request = state.request
    completed_tx = None
    contributions: dict[int, list[ContributionPublic]] = {}
    rounds: dict[int, RoundRecorded] = {}
    for event in state.events:
        if isinstance(event, ContributionRecorded):
            contributions.setdefault(event.round, []).append(ContributionPublic(
                hospital=event.hospital, cohort_root=_hex(event.cohort_root), cohort_count=event.cohort_count,
                update_hash=_hex(event.update_hash), block=event.block_number, tx_hash=event.tx_hash))
        elif isinstance(event, RoundRecorded):
            rounds[event.round] = event
        elif isinstance(event, StudyCompleted):
            completed_tx = event.tx_hash
    metrics = _metrics(model_dir, study_id)
    round_records = []
    for number in sorted(set(contributions) | set(rounds)):
        recorded = rounds.get(number)
        round_records.append(RoundPublic(
            round=number, contributions=contributions.get(number, []),
            model_hash=_hex(recorded.model_hash) if recorded else None,
            block=recorded.block_number if recorded else None, tx_hash=recorded.tx_hash if recorded else None,
            privacy_spent_milli_epsilon=recorded.privacy_spent if recorded else None,
            metrics=metrics.get(number)))
    return StudyPublic(
        study_id=study_id, status=_STATUS[state.status], researcher=request.researcher,  # type: ignore[arg-type]
        purpose=request.purpose.name, disease=request.disease,
        purpose_words=purpose_words(request.purpose, request.disease), kinds=kind_names(int(request.kinds)),
        task=task_names.get(request.task_code_hash), task_code_hash=_hex(request.task_code_hash),
        rounds=request.rounds, rounds_completed=state.rounds_completed,
        privacy_budget_epsilon=request.privacy_budget / 1000, privacy_spent_epsilon=state.privacy_spent / 1000,
        decisions=[DecisionPublic(hospital=h, decision=_DECISION[d])  # type: ignore[arg-type]
                   for h, d in state.decisions.items()],
        requested_at_block=request.block_number, started_at_block=state.started_at_block,
        round_records=round_records,
        final_model_hash=_hex(state.final_model_hash) if state.final_model_hash is not None else None,
        lineage_hash=_hex(state.lineage_hash) if state.lineage_hash is not None else None,
        completed_tx=completed_tx)


def summary(state: StudyState, my_part: list[str]) -> StudySummary:
    """A study in a list."""
    return StudySummary(study_id=state.study_id, status=_STATUS[state.status], researcher=state.researcher,
                        purpose_words=purpose_words(state.purpose, state.disease), rounds=state.request.rounds,
                        rounds_completed=state.rounds_completed, my_part=my_part)


def lineage(index: ChainIndex, study_id: int, model_dir: Path, task_names: Mapping[bytes, str]) -> dict[str, Any]:
    """The study's lineage, format ``metai-study-lineage`` version 1: every anchored fact and the files' hashes.

    It holds the chain and contract addresses, the study as :func:`study_public` gives it (each
    round's contributions with cohort roots, counts, update hashes, blocks and transactions, and
    the round models' hashes), every event of the study in chain order, and the hashes of the
    coordinator's model files recomputed from the files (the final model's must equal the
    anchored hash).
    """
    from coordinator.model_loader import file_sha256, model_hash
    from coordinator.study_log import final_model, round_model

    view = study_public(index, study_id, model_dir, task_names)
    exchange = index.exchange
    folder = study_folder(model_dir, study_id)
    files: dict[str, Any] = {}
    for name, path in [(f"round-{r.round}", round_model(folder, r.round)) for r in view.round_records] + [
            ("final", final_model(folder))]:
        if path.exists():
            files[name] = {"file": path.name, "sha256": file_sha256(path), "model_hash": model_hash(path)}
    events = [{"event": e.name, "block": e.block_number, "tx_hash": e.tx_hash, "log_index": e.log_index}
              for e in study_events(exchange, study_id)]  # read from the chain again: the lineage trusts no cache
    return {
        "format": LINEAGE_FORMAT, "version": LINEAGE_VERSION, "chain_id": exchange.chain.chain_id,
        "contracts": {name: c.address for name, c in exchange.deployment.contracts.items()},
        "study": json.loads(view.model_dump_json()), "events": events, "files": files,
        "final_model_matches_chain": bool(view.final_model_hash and files.get("final", {}).get("model_hash")
                                          == view.final_model_hash),
    }
