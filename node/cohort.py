"""The cohort of a study at a block: the records this node may use, and their commitment.

For a study read from chain and a block number, the cohort is every record of the requested
kinds that lies in a dataset this node registered on chain by that block and whose patient is
enrolled and permits this use (hospital, record kind, the study's purpose, the study) at that
block, per the consent registry's batch view. Its commitment is the Merkle root over the
members' cohort leaves and their count; each member names the dataset that holds it, so the
contribution can name the cohort's datasets and anyone can check each record's membership
against a root the chain holds. Records in no registered dataset are left out (and counted): a
node trains only on what it anchored.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Subquery, func, select

from contracts.datause import Kind, Use
from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from contracts.studies import StudyRecord
from node.catalog import Dataset, DatasetRecord, Patient, Record
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
    #: The id on chain of the registered dataset that holds the record.
    dataset_id: int
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
    #: Records of the study's kinds, of enrolled patients, left out because no dataset this node
    #: registered on chain by ``block`` holds them.
    unregistered: int = 0

    @property
    def count(self) -> int:
        """How many records are in the cohort."""
        return len(self.members)

    @property
    def dataset_ids(self) -> tuple[int, ...]:
        """The chain ids of the datasets the members come from, ascending (what the contribution names)."""
        return tuple(sorted({m.dataset_id for m in self.members}))

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


def registered_at(block: int) -> Subquery:
    """The records in a dataset this node registered on chain by ``block``: columns ``record_id``, ``dataset_id``.

    ``dataset_id`` is the dataset's id on chain. A record is in at most one dataset (a draft takes
    only records in none); were a catalog to hold one in two, the smallest id would be taken.
    """
    return (
        select(DatasetRecord.record_id, func.min(Dataset.chain_dataset_id).label("dataset_id"))
        .join(Dataset, Dataset.id == DatasetRecord.dataset_id)
        .where(Dataset.chain_dataset_id.is_not(None), Dataset.registered_block <= block)
        .group_by(DatasetRecord.record_id).subquery()
    )


def build_cohort(
    node: Node, study_id: int, block: int, study: StudyRecord | None = None, *, chunk: int | None = None
) -> Cohort:
    """Build the cohort of ``study_id`` as of ``block``.

    Only records in a dataset this node registered on chain at or before ``block`` are asked
    about; the others of the study's kinds (of enrolled patients) are counted in
    :attr:`Cohort.unregistered`. Judging registration as of ``block`` keeps a past cohort
    rebuildable: registering a draft later does not change it.

    Parameters:
        study: the study as read at ``block`` (read here if not given).
        chunk: patients per consent batch call (default ``ConsentClient.BATCH_CHUNK``); patients
            are asked about in address order.
    """
    exchange = node.exchange
    study = study or exchange.studies.study(study_id, block=block)
    wanted = [int(kind) for kind in Kind if kind in study.kinds]
    registered = registered_at(block)
    with node.sessions() as session:
        rows = session.execute(
            select(Record.record_id, Record.kind, Patient.address, registered.c.dataset_id, Record.path,
                   Record.label, Record.format, Record.synthetic)
            .join(Patient, Patient.pseudonym == Record.patient_pseudonym)
            .outerjoin(registered, registered.c.record_id == Record.record_id)
            .where(Patient.address.is_not(None), Record.kind.in_(wanted)).order_by(Record.record_id)
        ).all()
    unregistered = sum(r.dataset_id is None for r in rows)
    members: list[CohortMember] = []
    for kind in Kind:
        if kind not in study.kinds:
            continue
        of_kind = [r for r in rows if r.kind == int(kind) and r.dataset_id is not None]
        if not of_kind:
            continue
        patients = sorted({r.address for r in of_kind})
        use = Use(hospital=node.address, kinds=kind, purpose=study.purpose, disease=study.disease, study_id=study_id)
        answers = exchange.consent.permits_batch(patients, use, block=block, chunk=chunk)
        allowed = {p for p, ok in zip(patients, answers, strict=True) if ok}
        members.extend(CohortMember(r.record_id, r.kind, r.address, r.dataset_id, r.path, r.label, r.format,
                                    bool(r.synthetic))
                       for r in of_kind if r.address in allowed)
    members.sort(key=lambda m: m.record_id)
    if not members:
        return Cohort(study_id, block, (), bytes(32), None, unregistered)
    tree = MerkleTree(cohort_leaf(m.record_id, m.kind, m.patient) for m in members)
    return Cohort(study_id, block, tuple(members), tree.root, tree, unregistered)
