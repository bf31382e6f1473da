"""Typed client of ``StudyRegistry``: request, approve, start, contribute, record, complete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from contracts.base import BlockId, ContractClient
from contracts.chain import TxResult
from contracts.datause import Kind, Purpose, check_purpose
from contracts.enums import Decision, StudyStatus
from contracts.errors import ChainError
from contracts.events import ContributionRecorded, StudyRequested, address_topic, event_topic, read_events
from contracts.mirrors import build, function_outputs

__all__ = ["Decision", "StudyClient", "StudyRecord", "StudyRequest", "StudyStatus"]


@dataclass(frozen=True)
class StudyRequest:
    """What a researcher asks for. ``privacy_budget`` is in milli-epsilon (0: no DP)."""

    purpose: Purpose
    kinds: Kind
    hospitals: tuple[str, ...]
    task_code_hash: bytes
    rounds: int
    privacy_budget: int = 0
    disease: int = 0

    def __post_init__(self) -> None:
        check_purpose(self.purpose, self.disease)

    def as_tuple(self) -> tuple[int, int, int, list[str], bytes, int, int]:
        """The ABI tuple of ``StudyRegistry.StudyRequest``."""
        return (
            int(self.purpose),
            self.disease,
            int(self.kinds),
            list(self.hospitals),
            self.task_code_hash,
            self.rounds,
            self.privacy_budget,
        )


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored on chain: the fields of ``StudyRegistry.Study`` by name (contracts/mirrors.py)."""

    study_id: int
    researcher: str
    status: StudyStatus
    purpose: Purpose
    kinds: Kind
    disease: int
    rounds: int
    rounds_completed: int
    approvals: int
    round_opened_at_block: int
    task_code_hash: bytes
    privacy_budget: int
    privacy_spent: int
    requested_at_block: int
    started_at_block: int
    final_model_hash: bytes
    lineage_hash: bytes


class StudyClient(ContractClient):
    """The registry of federated training studies."""

    artifact = "StudyRegistry"

    def request(self, researcher: LocalAccount, req: StudyRequest) -> tuple[int, TxResult]:
        """Request a study; return its id and the transaction."""
        result = self._send(researcher, "request", req.as_tuple())
        return result.event(StudyRequested).study_id, result

    def approve(self, hospital: LocalAccount, study_id: int) -> TxResult:
        """Approve ``study_id`` as ``hospital``'s data committee."""
        return self._send(hospital, "approve", study_id)

    def decline(self, hospital: LocalAccount, study_id: int) -> TxResult:
        """Decline ``study_id``; it can then never start."""
        return self._send(hospital, "decline", study_id)

    def withdraw(self, researcher: LocalAccount, study_id: int) -> TxResult:
        """Withdraw ``study_id`` before it starts, as its researcher."""
        return self._send(researcher, "withdraw", study_id)

    def start(self, coordinator: LocalAccount, study_id: int) -> TxResult:
        """Start ``study_id`` (every named hospital must have approved)."""
        return self._send(coordinator, "start", study_id)

    def contribute(
        self, hospital: LocalAccount, study_id: int, round_: int, cohort_root: bytes,
        cohort_count: int, cohort_block: int, dataset_ids: Sequence[int], update_hash: bytes,
    ) -> TxResult:
        """Commit ``hospital``'s cohort and update for the open round.

        ``cohort_block`` is the block whose consents the cohort was computed at; ``dataset_ids``
        are ``hospital``'s registered datasets holding its records (sorted here).
        """
        ordered = sorted(set(dataset_ids))
        return self._send(hospital, "contribute", study_id, round_, cohort_root, cohort_count, cohort_block,
                          ordered, update_hash)

    def record_round(
        self, coordinator: LocalAccount, study_id: int, round_: int, model_hash: bytes,
        contributors: Sequence[str], privacy_spent: int = 0,
    ) -> TxResult:
        """Record the open round's aggregated model; contributors are sorted here."""
        ordered = sorted(contributors, key=lambda a: int(a, 16))
        return self._send(coordinator, "recordRound", study_id, round_, model_hash, ordered, privacy_spent)

    def complete(
        self, coordinator: LocalAccount, study_id: int, final_model_hash: bytes, lineage_hash: bytes,
    ) -> TxResult:
        """Complete ``study_id`` with its final model's hash and its lineage bundle's hash."""
        return self._send(coordinator, "complete", study_id, final_model_hash, lineage_hash)

    # ---------------------------------------------------------------- views

    def study(self, study_id: int, *, block: BlockId = "latest") -> StudyRecord:
        """The study ``study_id``; raises the contract's UnknownStudy error if absent."""
        fields = self._call("study", study_id, block=block)
        return build(StudyRecord, function_outputs(self.artifact, "study"), fields, study_id=study_id)

    def hospitals_of(self, study_id: int) -> list[str]:
        """The hospitals named in ``study_id``."""
        return [str(a) for a in self._call("hospitalsOf", study_id)]

    def decision_of(self, study_id: int, hospital: str, *, block: BlockId = "latest") -> Decision:
        """``hospital``'s decision on ``study_id``."""
        return Decision(self._call("decisionOf", study_id, hospital, block=block))

    def cohort_root_of(self, study_id: int, round_: int, hospital: str, *, block: BlockId = "latest") -> bytes:
        """The cohort root ``hospital`` committed to ``round_`` of ``study_id`` (zero bytes if none)."""
        return bytes(self._call("cohortRootOf", study_id, round_, hospital, block=block))

    def contribution_of(self, study_id: int, round_: int, hospital: str) -> ContributionRecorded | None:
        """``hospital``'s contribution to ``round_`` of ``study_id``, as its event records it; None if none.

        The contract stores only the cohort root; the rest is read from the one
        ``ContributionRecorded`` event for (study, round, hospital), searched from the study's start.

        Raises:
            ChainError: the root is stored but the endpoint serves no single matching event (an
                endpoint that drops old logs).
        """
        root = self.cohort_root_of(study_id, round_, hospital)
        if root == bytes(32):
            return None
        started = self.study(study_id).started_at_block
        topics = [event_topic(self.artifact, "ContributionRecorded"), "0x" + study_id.to_bytes(32, "big").hex(),
                  "0x" + round_.to_bytes(32, "big").hex(), address_topic(hospital)]
        found = [e for e in read_events(self.chain, [self.address], from_block=started, topics=topics)
                 if isinstance(e, ContributionRecorded) and e.cohort_root == root]
        if len(found) != 1:
            raise ChainError(f"study {study_id} round {round_}: hospital {hospital} has cohort root 0x{root.hex()} "
                             f"on chain but the endpoint returned {len(found)} matching ContributionRecorded "
                             "events (expected exactly one); is it serving old logs?")
        return found[0]

    def round_model_hash(self, study_id: int, round_: int) -> bytes:
        """The aggregated model hash recorded for ``round_`` (zero bytes if none)."""
        return bytes(self._call("roundModelHash", study_id, round_))

    def count(self) -> int:
        """How many studies were requested."""
        return int(self._call("studyCount"))

    def in_cohort(
        self, study_id: int, round_: int, hospital: str, leaf: bytes, proof: Sequence[bytes]
    ) -> bool:
        """Whether the chain accepts ``proof`` that ``leaf`` was in ``hospital``'s round cohort."""
        return bool(self._call("inCohort", study_id, round_, hospital, leaf, list(proof)))
