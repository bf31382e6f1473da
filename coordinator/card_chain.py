"""What the chain says about a study, read back from its events for the model card.

The model card states the study's facts as the chain holds them (request, approvals, each
round's contributions and model hash, the epsilon recorded, the final model hash), not as the
coordinator remembers them, so that an auditor reading the card can check every line against
the chain with any client. :func:`read_study_on_chain` reads the events with the contracts'
own decoder (``contracts.events``) and cross-checks them with the registry's views.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import (
    ContributionRecorded,
    DatasetRegistered,
    RoundRecorded,
    StudyApproved,
    StudyCompleted,
    StudyRequested,
    StudyStarted,
)
from contracts.exchange import Exchange
from contracts.studies import StudyRecord
from coordinator.errors import ModelCardError

__all__ = ["ContributionOnChain", "RoundOnChain", "StudyOnChain", "read_study_on_chain"]


@dataclass(frozen=True)
class ContributionOnChain:
    """One hospital's anchored commitment for one round (event ``ContributionRecorded``)."""

    hospital: str
    cohort_root: bytes
    cohort_count: int
    update_hash: bytes
    block: int
    tx_hash: str


@dataclass(frozen=True)
class RoundOnChain:
    """One aggregated round (event ``RoundRecorded``) with the contributions it aggregated."""

    round: int
    model_hash: bytes
    contributors: tuple[str, ...]
    privacy_spent_milli: int
    block: int
    tx_hash: str
    contributions: tuple[ContributionOnChain, ...]


@dataclass(frozen=True)
class StudyOnChain:
    """A study as its events and the registry's views tell it."""

    record: StudyRecord
    requested: StudyRequested
    approvals: dict[str, int]  # hospital -> block of its approval
    started_block: int
    rounds: tuple[RoundOnChain, ...]
    completed: StudyCompleted | None
    #: Datasets the study's hospitals registered up to the study's last event (synthetic flag included).
    datasets: tuple[DatasetRegistered, ...]


def read_study_on_chain(exchange: Exchange, study_id: int) -> StudyOnChain:
    """Read study ``study_id``'s events from the chain and check them against the registry's views.

    Parameters:
        exchange: the deployment's contracts.
        study_id: the study's id on chain.

    Returns:
        The study's request, approvals, rounds with their contributions, completion and the
        datasets its hospitals registered.

    Raises:
        ModelCardError: the study has no ``StudyRequested`` event, or an event disagrees with
            the registry's stored value (a round's model hash, a contribution's cohort).
    """
    record = exchange.studies.study(study_id)
    events = exchange.events()
    requested = next((e for e in events if isinstance(e, StudyRequested) and e.study_id == study_id), None)
    if requested is None:
        raise ModelCardError(f"study {study_id}: no StudyRequested event between the deployment block "
                             f"{exchange.deployment.deploy_block} and now; is the manifest the study's deployment?")
    ours = [e for e in events if getattr(e, "study_id", None) == study_id]
    approvals = {e.hospital: e.block_number for e in ours if isinstance(e, StudyApproved)}
    started = next((e.block_number for e in ours if isinstance(e, StudyStarted)), 0)
    completed = next((e for e in ours if isinstance(e, StudyCompleted)), None)
    contributions: dict[int, list[ContributionOnChain]] = {}
    for e in ours:
        if isinstance(e, ContributionRecorded):
            contributions.setdefault(e.round, []).append(ContributionOnChain(
                e.hospital, e.cohort_root, e.cohort_count, e.update_hash, e.block_number, e.tx_hash))
    rounds = []
    for e in ours:
        if not isinstance(e, RoundRecorded):
            continue
        stored = exchange.studies.round_model_hash(study_id, e.round)
        if stored != e.model_hash:
            raise ModelCardError(f"study {study_id} round {e.round}: RoundRecorded says model 0x{e.model_hash.hex()}, "
                                 f"the registry stores 0x{stored.hex()}; the chain's history is inconsistent")
        # Only the contributions the round aggregated; a hospital the coordinator refused is not in it.
        aggregated = tuple(c for c in contributions.get(e.round, []) if c.hospital in e.contributors)
        rounds.append(RoundOnChain(e.round, e.model_hash, e.contributors, e.privacy_spent, e.block_number,
                                   e.tx_hash, aggregated))
    last_block = max((e.block_number for e in ours), default=requested.block_number)
    hospitals = set(requested.hospitals)
    datasets = tuple(e for e in events if isinstance(e, DatasetRegistered) and e.hospital in hospitals
                     and e.block_number <= last_block)
    return StudyOnChain(record, requested, approvals, started, tuple(sorted(rounds, key=lambda r: r.round)),
                        completed, datasets)
