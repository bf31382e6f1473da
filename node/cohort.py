"""The cohort of a study at a block: the records this node may use, and their commitment.

For a study read from chain and a block number, the cohort is every record of the requested
kinds whose patient is enrolled and permits this use (hospital, record kind, the study's
purpose, the study) at that block, per the consent registry's batch view. Its commitment is the
Merkle root over the members' cohort leaves and their count.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from contracts.datause import Kind, Use
from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from contracts.studies import StudyRecord
from node.catalog import Patient, Record
from node.errors import NodeError
from node.node import Node


class CohortError(NodeError, LookupError):
    """A record asked about is not in the cohort."""


@dataclass(frozen=True)
class CohortMember:
    """One record in a cohort."""

    record_id: str
    kind: int
    patient: str  # address
    path: str
    label: str | None
    format: str  # dicom | ismrmrd | metai-ct-sinogram
    #: The catalog's flag: the record is simulated (a virtual scan of a digital patient).
    synthetic: bool = False


@dataclass(frozen=True)
class Cohort:
    """The records usable for a study at a block, with their commitment."""

    study_id: int
    block: int
    members: tuple[CohortMember, ...]  # in record-id order
    root: bytes  # zero bytes when empty
    tree: MerkleTree | None

    @property
    def count(self) -> int:
        """How many records are in the cohort."""
        return len(self.members)

    def proof(self, record_id: str) -> tuple[bytes, list[bytes]]:
        """The leaf and Merkle proof of ``record_id`` (to give its patient).

        Raises:
            CohortError: ``record_id`` is not a member of this cohort.
        """
        member = next((m for m in self.members if m.record_id == record_id), None)
        if member is None or self.tree is None:
            raise CohortError(
                f"record {record_id} is not in the cohort of study {self.study_id} at block {self.block} "
                f"({self.count} records); only members have a proof: check the record id, the study and the block"
            )
        leaf = cohort_leaf(member.record_id, member.kind, member.patient)
        return leaf, self.tree.proof(leaf)


def build_cohort(
    node: Node, study_id: int, block: int, study: StudyRecord | None = None, *, chunk: int | None = None
) -> Cohort:
    """Build the cohort of ``study_id`` as of ``block``.

    Parameters:
        study: the study as read at ``block`` (read here if not given).
        chunk: patients per consent batch call (default ``ConsentClient.BATCH_CHUNK``); patients
            are asked about in address order.
    """
    exchange = node.exchange
    study = study or exchange.studies.study(study_id, block=block)
    with node.sessions() as session:
        rows = session.execute(
            select(Record.record_id, Record.kind, Patient.address, Record.path, Record.label, Record.format,
                   Record.synthetic)
            .join(Patient, Patient.pseudonym == Record.patient_pseudonym)
            .where(Patient.address.is_not(None)).order_by(Record.record_id)
        ).all()
    members: list[CohortMember] = []
    for kind in Kind:
        if kind not in study.kinds:
            continue
        of_kind = [r for r in rows if r.kind == int(kind)]
        if not of_kind:
            continue
        patients = sorted({r.address for r in of_kind})
        use = Use(hospital=node.address, kinds=kind, purpose=study.purpose, disease=study.disease, study_id=study_id)
        answers = exchange.consent.permits_batch(patients, use, block=block, chunk=chunk)
        allowed = {p for p, ok in zip(patients, answers, strict=True) if ok}
        members.extend(CohortMember(r.record_id, r.kind, r.address, r.path, r.label, r.format,
                                    bool(r.synthetic))
                       for r in of_kind if r.address in allowed)
    members.sort(key=lambda m: m.record_id)
    if not members:
        return Cohort(study_id, block, (), bytes(32), None)
    tree = MerkleTree(cohort_leaf(m.record_id, m.kind, m.patient) for m in members)
    return Cohort(study_id, block, tuple(members), tree.root, tree)

