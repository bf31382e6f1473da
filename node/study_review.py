"""What a hospital's data committee sees of the studies that name it, in plain words, with a cohort preview.

``metai-node studies`` lists them and ``approve`` / ``decline`` show one before asking. The
studies naming a hospital are found from their ``StudyRequested`` events; each is then read
through the registry's views at one block (status, this hospital's decision), so a listing is
one consistent picture of the chain.

The cohort preview of a study counts this node's records of the kinds it asks for: those that
would be in its cohort at that block (:func:`node.cohort.build_cohort`, the rule training uses)
and, for each of the others, why not: it is in no dataset the node registered on chain by then,
its patient is not enrolled (no address), or the reason ``ConsentRegistry.explain`` gives (no
matching consent, revoked, expired, kind not covered), the first that applies in that order.
The reasons cost one call per excluded (patient, kind), in the order the records come.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import select

from contracts.datause import Kind, Purpose, Use
from contracts.errors import ContractRevert
from contracts.events import StudyRequested, read_events
from contracts.studies import Decision, StudyRecord, StudyStatus
from node.catalog import Patient, Record
from node.cohort import build_cohort, registered_at
from node.errors import NodeError, StudyDecisionError
from node.node import Node

#: Name and version of the ``metai-node studies --json`` document (docs/node.md describes it).
STUDIES_FORMAT = "metai-node-studies"
STUDIES_VERSION = 1

KIND_WORDS = {Kind.IMAGE: "image", Kind.CT_SINOGRAM: "CT sinogram", Kind.MR_KSPACE: "MR k-space",
              Kind.DERIVED: "derived"}
#: ConsentRegistry.explain's reverts -> the preview's field for them.
CONSENT_REASONS = {
    "ConsentRegistryNoMatchingConsent": "no_consent",
    "ConsentRegistryConsentRevoked": "revoked",
    "ConsentRegistryConsentExpired": "expired",
    "ConsentRegistryKindsNotCovered": "kind_not_covered",
}


def purpose_words(purpose: Purpose, disease: int) -> str:
    """The DUO purpose in words: "general research use", "research on disease code 77", ..."""
    if purpose == Purpose.DS:
        return f"research on disease code {disease}"
    return {Purpose.GRU: "general research use", Purpose.HMB: "health/medical/biomedical research"}[purpose]


def kinds_words(kinds: Kind) -> str:
    """The data kinds in words, in bit order: "image, CT sinogram"."""
    return ", ".join(words for kind, words in KIND_WORDS.items() if kind in kinds) or "none"


def epsilon(privacy_budget: int) -> float | None:
    """The study's differential-privacy budget as epsilon (stored in milli-epsilon); None: no budget."""
    return privacy_budget / 1000 if privacy_budget else None


@dataclass(frozen=True)
class CohortPreview:
    """This node's records of a study's kinds at ``block``: in the cohort, or why not (record counts)."""

    block: int
    records: int
    in_cohort: int
    not_registered: int = 0
    not_enrolled: int = 0
    no_consent: int = 0
    revoked: int = 0
    expired: int = 0
    kind_not_covered: int = 0

    def reasons(self) -> dict[str, int]:
        """Why records are not in the cohort: field name -> records (every reason, zeros included)."""
        return {f.name: getattr(self, f.name) for f in fields(self)[3:]}


@dataclass(frozen=True)
class StudyView:
    """A study naming ``hospital``, as read at ``block``, with the hospital's decision on it."""

    record: StudyRecord
    hospitals: tuple[str, ...]
    hospital: str
    decision: Decision
    block: int

    @property
    def study_id(self) -> int:
        """The study's id on chain."""
        return self.record.study_id

    @property
    def pending(self) -> bool:
        """Whether the study awaits this hospital's decision."""
        return self.record.status == StudyStatus.REQUESTED and self.decision == Decision.PENDING


def _read(node: Node, study_id: int, hospitals: tuple[str, ...], block: int) -> StudyView:
    studies = node.exchange.studies
    return StudyView(studies.study(study_id, block=block), hospitals, node.address,
                     studies.decision_of(study_id, node.address, block=block), block)


def studies_naming(node: Node, *, decided: bool = False) -> tuple[int, list[StudyView]]:
    """The studies that name this node's hospital, in id order, as of the latest block.

    Parameters:
        decided: also those no longer awaiting its decision (default: only the pending ones).

    Returns:
        The block read at, and the studies.
    """
    exchange = node.exchange
    block = exchange.chain.block_number
    events = read_events(exchange.chain, [exchange.studies.address], from_block=exchange.deployment.deploy_block,
                         to_block=block)
    me = node.address.lower()
    views = [_read(node, e.study_id, e.hospitals, block) for e in events
             if isinstance(e, StudyRequested) and me in {h.lower() for h in e.hospitals}]
    return block, [v for v in views if decided or v.pending]


def study_to_decide(node: Node, study_id: int) -> StudyView:
    """Study ``study_id`` as of the latest block, checked to await this hospital's decision.

    Raises:
        StudyDecisionError: the study does not exist, does not name this hospital, or does not
            await its decision (the message says which, and the decision already taken).
    """
    studies = node.exchange.studies
    count = studies.count()
    if not 1 <= study_id <= count:
        raise StudyDecisionError(f"study {study_id} does not exist (the chain holds studies 1 to {count}); "
                                 "check the id with `metai-node studies --all`")
    hospitals = tuple(studies.hospitals_of(study_id))
    if node.address.lower() not in {h.lower() for h in hospitals}:
        raise StudyDecisionError(f"study {study_id} does not name this hospital ({node.address}); only the "
                                 f"hospitals it names decide on it: {', '.join(hospitals)}")
    view = _read(node, study_id, hospitals, node.exchange.chain.block_number)
    if view.decision != Decision.PENDING:
        raise StudyDecisionError(f"study {study_id} is not awaiting this hospital's decision: it was already "
                                 f"{view.decision.name.lower()} (study status: {view.record.status.name.lower()}); "
                                 "a decision is final")
    if view.record.status != StudyStatus.REQUESTED:
        raise StudyDecisionError(f"study {study_id} is not awaiting decisions: its status is "
                                 f"{view.record.status.name.lower()} (another named hospital declined it); "
                                 "nothing to decide")
    return view


def cohort_preview(node: Node, view: StudyView) -> CohortPreview:
    """Count this node's records of ``view``'s kinds in its cohort at ``view.block``, and why the others are not."""
    study = view.record
    cohort = build_cohort(node, view.study_id, view.block, study)
    members = {m.record_id for m in cohort.members}
    wanted = [int(kind) for kind in KIND_WORDS if kind in study.kinds]
    registered = registered_at(view.block)
    with node.sessions() as session:
        rows = session.execute(
            select(Record.record_id, Record.kind, Patient.address, registered.c.dataset_id)
            .join(Patient, Patient.pseudonym == Record.patient_pseudonym)
            .outerjoin(registered, registered.c.record_id == Record.record_id).where(Record.kind.in_(wanted))
        ).all()
    counts: Counter[str] = Counter()
    why: dict[tuple[str, int], str] = {}  # one explain per (patient, kind), whatever their records
    for record_id, kind, address, dataset_id in rows:
        if record_id in members:
            continue
        if dataset_id is None:
            counts["not_registered"] += 1
            continue
        if address is None:
            counts["not_enrolled"] += 1
            continue
        if (address, kind) not in why:
            why[address, kind] = _why_not(node, view, address, Kind(kind))
        counts[why[address, kind]] += 1
    return CohortPreview(view.block, len(rows), cohort.count, **counts)


def _why_not(node: Node, view: StudyView, patient: str, kind: Kind) -> str:
    study = view.record
    use = Use(hospital=node.address, kinds=kind, purpose=study.purpose, disease=study.disease,
              study_id=view.study_id)
    try:
        node.exchange.consent.explain(patient, use, block=view.block)
    except ContractRevert as exc:
        if exc.error in CONSENT_REASONS:
            return CONSENT_REASONS[exc.error]
        raise
    raise NodeError(f"patient {patient} permits {kinds_words(kind)} for study {view.study_id} at block "
                    f"{view.block} but is not in its cohort then: this is a bug; please report it")


def study_json(view: StudyView, preview: CohortPreview | None) -> dict[str, Any]:
    """One study of the ``metai-node studies --json`` document (docs/node.md)."""
    s = view.record
    return {
        "study_id": s.study_id,
        "researcher": s.researcher,
        "purpose": s.purpose.name,
        "disease": s.disease or None,
        "purpose_words": purpose_words(s.purpose, s.disease),
        "kinds": [kind.name.lower() for kind in KIND_WORDS if kind in s.kinds and kind.name],
        "kinds_words": kinds_words(s.kinds),
        "hospitals": list(view.hospitals),
        "rounds": s.rounds,
        "rounds_completed": s.rounds_completed,
        "privacy_budget_epsilon": epsilon(s.privacy_budget),
        "task_code_hash": "0x" + s.task_code_hash.hex(),
        "requested_at_block": s.requested_at_block,
        "status": s.status.name.lower(),
        "decision": view.decision.name.lower(),
        "preview": None if preview is None else {
            "records": preview.records, "in_cohort": preview.in_cohort, "not_in_cohort": preview.reasons()},
    }


def studies_json(node: Node, block: int, items: list[tuple[StudyView, CohortPreview | None]]) -> dict[str, Any]:
    """The ``metai-node studies --json`` document: this hospital, the block read at, the studies."""
    return {"format": STUDIES_FORMAT, "version": STUDIES_VERSION, "hospital": node.address,
            "hospital_name": node.info.hospital_name, "block": block,
            "studies": [study_json(view, preview) for view, preview in items]}
