"""What a node's catalog holds, counted (``metai-node status``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from contracts.datause import Kind
from node.catalog import Dataset, Patient, Record
from node.node import Node


@dataclass(frozen=True)
class CatalogSummary:
    """Counts of the node's catalog."""

    #: Records per data kind, in the order the catalog gives them.
    records_by_kind: dict[Kind, int]
    #: Patients known to the node, and those of them linked to an address (enrolled).
    patients: int
    enrolled: int
    #: Datasets anchored on chain.
    registered_datasets: int


def catalog_summary(node: Node) -> CatalogSummary:
    """Count the records by kind, the patients (and the enrolled ones) and the registered datasets."""
    with node.sessions() as session:
        by_kind = session.execute(select(Record.kind, func.count()).group_by(Record.kind)).all()
        patients = session.scalar(select(func.count()).select_from(Patient)) or 0
        enrolled = session.scalar(select(func.count()).select_from(Patient).where(Patient.address.is_not(None))) or 0
        registered = session.scalar(select(func.count()).select_from(Dataset)) or 0
    return CatalogSummary({Kind(kind): int(n) for kind, n in by_kind}, int(patients), int(enrolled), int(registered))
