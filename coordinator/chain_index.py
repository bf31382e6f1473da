"""The exchange's events, followed from the chain and kept in memory, for answers that need no chain call.

The service answers "my consents", "who used my data" and "a study's status" many times a
second; asking the chain each time would cost an ``eth_getLogs`` per request. Instead one
:class:`ChainIndex` per service process holds every event of the deployment's contracts, read
once from the deployment block and then followed: a reader asks :meth:`ChainIndex.sync`, which
reads the blocks mined since the last read, but at most once per ``max_lag`` seconds, so an
answer is at most that old. Everything here is public on chain; nothing is written back.

A study's state is replayed from its events exactly as ``StudyRegistry`` moves it: requested,
declined by any named hospital, started, each recorded round, completed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from contracts.datause import Kind, Purpose
from contracts.enums import Decision, Role, StudyStatus
from contracts.events import (
    ChainEvent,
    ConsentGranted,
    ConsentRevoked,
    ContributionRecorded,
    DatasetRegistered,
    RoleGranted,
    RoleRevoked,
    RoundRecorded,
    StudyApproved,
    StudyCompleted,
    StudyDeclined,
    StudyRequested,
    StudyStarted,
    read_events,
)
from contracts.exchange import Exchange


@dataclass
class StudyState:
    """A study as its events leave it."""

    request: StudyRequested
    events: list[ChainEvent] = field(default_factory=list)
    status: StudyStatus = StudyStatus.REQUESTED
    decisions: dict[str, Decision] = field(default_factory=dict)
    rounds_completed: int = 0
    privacy_spent: int = 0
    started_at_block: int | None = None
    final_model_hash: bytes | None = None
    #: keccak256 of the study's lineage bundle index, anchored at completion.
    lineage_hash: bytes | None = None

    @property
    def study_id(self) -> int:
        """The study's id."""
        return self.request.study_id

    @property
    def researcher(self) -> str:
        """The account that requested it."""
        return self.request.researcher

    @property
    def purpose(self) -> Purpose:
        """Its DUO purpose."""
        return self.request.purpose

    @property
    def disease(self) -> int:
        """Its disease code (DS only)."""
        return self.request.disease

    @property
    def kinds(self) -> Kind:
        """The data kinds it asks for."""
        return self.request.kinds

    def apply(self, event: ChainEvent) -> None:
        """Move the state as the contract did when it emitted ``event``."""
        self.events.append(event)
        if isinstance(event, StudyApproved):
            self.decisions[event.hospital] = Decision.APPROVED
        elif isinstance(event, StudyDeclined):
            self.decisions[event.hospital] = Decision.DECLINED
            self.status = StudyStatus.DECLINED
        elif isinstance(event, StudyStarted):
            self.status, self.started_at_block = StudyStatus.RUNNING, event.block_number
        elif isinstance(event, RoundRecorded):
            self.rounds_completed = max(self.rounds_completed, event.round)
            self.privacy_spent += event.privacy_spent
        elif isinstance(event, StudyCompleted):
            self.status, self.final_model_hash = StudyStatus.COMPLETED, event.final_model_hash
            self.lineage_hash = event.lineage_hash


def _in_event_loop() -> bool:
    """Whether the calling thread is running an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ChainIndex:
    """Every event of the exchange's contracts, read once and then followed.

    Parameters:
        exchange: the deployment to follow.
        max_lag: seconds an answer may lag the chain (0: read new blocks on every question).
    """

    def __init__(self, exchange: Exchange, *, max_lag: float = 0.5) -> None:
        self.exchange = exchange
        self.max_lag = max_lag
        self._lock = threading.Lock()  # guards the state below; never held across a chain call
        self._sync_lock = threading.Lock()  # one reader of the chain at a time
        self._synced_at = float("-inf")
        self._block = exchange.deployment.deploy_block - 1
        self._consents: defaultdict[str, list[ConsentGranted | ConsentRevoked]] = defaultdict(list)
        self._studies: dict[int, StudyState] = {}
        self._datasets: list[DatasetRegistered] = []
        self._hospitals: dict[str, int] = {}  # a HOSPITAL role holder -> the block it was granted in

    @property
    def block(self) -> int:
        """The last block read."""
        return self._block

    def ever_synced(self) -> bool:
        """Whether the chain was read at least once."""
        return self._synced_at != float("-inf")

    def age(self) -> float:
        """Seconds since the last read of the chain began (infinite before the first)."""
        return time.monotonic() - self._synced_at

    def fresh(self) -> bool:
        """Whether the last read is recent enough that :meth:`sync` would not read again."""
        return time.monotonic() - self._synced_at < self.max_lag

    def sync(self, *, force: bool = False) -> int:
        """Read the blocks mined since the last read (unless that was under ``max_lag`` s ago); the last block read.

        Concurrent callers wait for one read instead of each making their own; with a lag above 0,
        a caller that finds a read already under way does not wait for it but answers from the
        index as it is (the service's event loop must never wait on the chain).
        """
        if not force and time.monotonic() - self._synced_at < self.max_lag:
            return self._block
        if not force and self.max_lag > 0 and self.ever_synced() and (self._sync_lock.locked() or _in_event_loop()):
            # On the event loop a read would stall every request in flight (the service refreshes
            # the index from a worker thread instead: coordinator.api.deps.fresh_index).
            return self._block
        with self._sync_lock:
            if not force and time.monotonic() - self._synced_at < self.max_lag:
                return self._block
            asked = time.monotonic()
            head = self.exchange.chain.block_number
            if head > self._block:
                addresses = [c.address for c in self.exchange.deployment.contracts.values()]
                events = read_events(self.exchange.chain, addresses, from_block=self._block + 1, to_block=head)
                with self._lock:  # readers wait for the update, never for the chain
                    for event in events:
                        self._apply(event)
                    self._block = head
            self._synced_at = asked
            return self._block

    def _apply(self, event: ChainEvent) -> None:
        if isinstance(event, DatasetRegistered):
            self._datasets.append(event)
        elif isinstance(event, RoleGranted) and event.role == Role.HOSPITAL.value:
            self._hospitals.setdefault(event.account, event.block_number)
        elif isinstance(event, RoleRevoked) and event.role == Role.HOSPITAL.value:
            self._hospitals.pop(event.account, None)
        elif isinstance(event, (ConsentGranted, ConsentRevoked)):
            self._consents[event.patient].append(event)
        elif isinstance(event, StudyRequested):
            state = StudyState(event, decisions=dict.fromkeys(event.hospitals, Decision.PENDING))
            state.events.append(event)
            self._studies[event.study_id] = state
        elif isinstance(event, (StudyApproved, StudyDeclined, StudyStarted, ContributionRecorded, RoundRecorded,
                                StudyCompleted)):
            study = self._studies.get(event.study_id)
            if study is not None:
                study.apply(event)

    def consent_events(self, patient: str) -> list[ConsentGranted | ConsentRevoked]:
        """``patient``'s ConsentGranted and ConsentRevoked events, in chain order."""
        self.sync()
        with self._lock:
            return list(self._consents.get(patient, ()))

    def study(self, study_id: int) -> StudyState | None:
        """Study ``study_id`` as its events leave it (a copy), or None if no such study was requested."""
        self.sync()
        with self._lock:
            found = self._studies.get(study_id)
            return None if found is None else _copy(found)

    def hospitals(self) -> dict[str, int]:
        """The accounts holding the HOSPITAL role now, each with the block it was granted in."""
        self.sync()
        with self._lock:
            return dict(self._hospitals)

    def datasets(self) -> list[DatasetRegistered]:
        """Every dataset registered, in chain order."""
        self.sync()
        with self._lock:
            return list(self._datasets)

    def studies(self) -> list[StudyState]:
        """Every study (copies), newest first."""
        self.sync()
        with self._lock:
            return [_copy(s) for s in sorted(self._studies.values(), key=lambda s: -s.study_id)]


def _copy(state: StudyState) -> StudyState:
    return dataclasses.replace(state, events=list(state.events), decisions=dict(state.decisions))
