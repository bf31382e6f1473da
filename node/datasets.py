"""Datasets of a node: drafts of unregistered records, registration on chain, verification.

Records not yet in a registered dataset are grouped into one draft per (kind, modality,
synthetic). Registering a draft freezes its membership, computes the Merkle root over its
record leaves and anchors it on chain. ``verify`` recomputes every hash from disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.datause import Kind
from contracts.leaves import record_leaf
from contracts.merkle import MerkleTree
from node.catalog import Dataset, DatasetRecord, Record
from node.errors import DatasetError
from node.node import Node
from node.store import sha256_file


@dataclass(frozen=True)
class DatasetView:
    """A dataset or a draft, for listing."""

    name: str
    kind: Kind
    modality: str
    synthetic: bool
    record_count: int
    merkle_root: str | None
    chain_dataset_id: int | None
    registered_block: int | None


def _kind_name(kind: int) -> str:
    return "-".join((m.name or "").lower().replace("_", "") for m in Kind if m in Kind(kind))


def draft_name(kind: int, modality: str, synthetic: bool, version: int) -> str:
    """The name of a draft: ``<kind>-<modality>[-synthetic]-v<n>``, e.g. ``ctsinogram-CT-synthetic-v1``."""
    return f"{_kind_name(kind)}-{modality}{'-synthetic' if synthetic else ''}-v{version}"


def _unregistered(session: Session) -> dict[tuple[int, str, bool], list[Record]]:
    taken = select(DatasetRecord.record_id)
    groups: dict[tuple[int, str, bool], list[Record]] = {}
    for rec in session.scalars(select(Record).where(Record.record_id.not_in(taken)).order_by(Record.record_id)):
        groups.setdefault((rec.kind, rec.modality, rec.synthetic), []).append(rec)
    return groups


def _next_version(session: Session, kind: int, modality: str, synthetic: bool) -> int:
    existing = session.scalars(select(Dataset.name).where(
        Dataset.kind == kind, Dataset.modality == modality, Dataset.synthetic == synthetic)).all()
    return len(existing) + 1


def list_datasets(node: Node) -> list[DatasetView]:
    """Registered datasets, then the drafts registration would create."""
    with node.sessions() as session:
        views = [
            DatasetView(d.name, Kind(d.kind), d.modality, d.synthetic, d.record_count, d.merkle_root,
                        d.chain_dataset_id, d.registered_block)
            for d in session.scalars(select(Dataset).order_by(Dataset.id))
        ]
        for (kind, modality, synthetic), records in sorted(_unregistered(session).items()):
            name = draft_name(kind, modality, synthetic, _next_version(session, kind, modality, synthetic))
            views.append(DatasetView(name, Kind(kind), modality, synthetic, len(records), None, None, None))
    return views


def register(node: Node, name: str) -> Dataset:
    """Freeze the draft ``name`` and anchor it on chain with the hospital's key.

    Raises:
        DatasetError: no such draft (or already registered).
        ChainError: the registration transaction fails (nothing is recorded locally then).
    """
    with node.sessions() as session:
        if session.scalar(select(Dataset).where(Dataset.name == name)) is not None:
            raise DatasetError(f"dataset {name} is already registered; new records go into a new draft")
        matches = [(key, recs) for key, recs in _unregistered(session).items()
                   if draft_name(*key, _next_version(session, *key)) == name]
        if not matches:
            known = ", ".join(v.name for v in list_datasets(node) if v.chain_dataset_id is None) or "none"
            raise DatasetError(f"no draft dataset named {name}; drafts: {known}")
        (kind, modality, synthetic), records = matches[0]
        tree = MerkleTree(record_leaf(r.record_id, r.kind) for r in records)
        chain_id, tx = node.exchange.datasets.register(
            node.account, tree.root, len(records), Kind(kind), modality, synthetic=synthetic
        )
        dataset = Dataset(name=name, kind=kind, modality=modality, synthetic=synthetic, merkle_root=tree.root.hex(),
                          record_count=len(records), chain_dataset_id=chain_id, registered_block=tx.block_number,
                          registered_tx=tx.tx_hash)
        session.add(dataset)
        session.flush()
        session.add_all(DatasetRecord(dataset_id=dataset.id, record_id=r.record_id) for r in records)
        session.commit()
        return dataset


def register_drafts(node: Node, kinds: Kind | None = None) -> list[Dataset]:
    """Register every draft (of ``kinds`` only, if given), in listing order; return the datasets registered.

    A node trains only on records in a dataset it registered (:mod:`node.cohort`): this is
    what a node does after ingesting the records it means to train on.

    Raises:
        ChainError: a registration fails (the drafts registered before it stay registered).
    """
    names = [v.name for v in list_datasets(node)
             if v.chain_dataset_id is None and v.merkle_root is None and (kinds is None or v.kind in kinds)]
    return [register(node, name) for name in names]


def record_proof(node: Node, name: str, record_id: str) -> tuple[bytes, list[bytes]]:
    """The leaf and Merkle proof of ``record_id`` in registered dataset ``name``."""
    with node.sessions() as session:
        dataset = session.scalar(select(Dataset).where(Dataset.name == name))
        if dataset is None:
            raise DatasetError(f"no registered dataset named {name}")
        records = _members(session, dataset)
    tree = MerkleTree(record_leaf(r.record_id, r.kind) for r in records)
    match = [r for r in records if r.record_id == record_id]
    if not match:
        raise DatasetError(f"record {record_id} is not in dataset {name}")
    leaf = record_leaf(record_id, match[0].kind)
    return leaf, tree.proof(leaf)


@dataclass(frozen=True)
class CheckedProof:
    """A record's Merkle proof in a registered dataset, and whether the chain accepts it."""

    leaf: bytes
    path: list[bytes]
    #: The dataset's id on chain (None: the dataset is not anchored, so nothing accepts the proof).
    chain_dataset_id: int | None
    accepted: bool


def check_record_proof(node: Node, name: str, record_id: str) -> CheckedProof:
    """The leaf and Merkle proof of ``record_id`` in registered dataset ``name``, checked on chain.

    Raises:
        DatasetError: no registered dataset ``name``, or the record is not in it.
    """
    leaf, path = record_proof(node, name, record_id)
    with node.sessions() as session:
        chain_id = session.scalar(select(Dataset.chain_dataset_id).where(Dataset.name == name))
    accepted = node.exchange.datasets.contains_record(chain_id, leaf, path) if chain_id else False
    return CheckedProof(leaf, path, chain_id, accepted)


def _members(session: Session, dataset: Dataset) -> list[Record]:
    return list(session.scalars(
        select(Record).join(DatasetRecord, DatasetRecord.record_id == Record.record_id)
        .where(DatasetRecord.dataset_id == dataset.id).order_by(Record.record_id)))


def verify(node: Node) -> list[str]:
    """Recompute every registered dataset from disk and compare with catalog and chain.

    Returns:
        One line per mismatch (empty when everything matches).
    """
    problems: list[str] = []
    with node.sessions() as session:
        for dataset in session.scalars(select(Dataset).order_by(Dataset.id)):
            records = _members(session, dataset)
            for rec in records:
                path = node.dir / rec.path
                if not path.exists():
                    problems.append(f"dataset {dataset.name}: record {rec.record_id} is missing from disk ({rec.path})")
                elif sha256_file(Path(path)) != rec.record_id:
                    problems.append(f"dataset {dataset.name}: record {rec.record_id} was modified on disk ({rec.path})")
            root = MerkleTree(record_leaf(r.record_id, r.kind) for r in records).root if records else bytes(32)
            if root.hex() != dataset.merkle_root:
                problems.append(f"dataset {dataset.name}: catalog membership gives root 0x{root.hex()}, "
                                f"registered 0x{dataset.merkle_root}")
            if dataset.chain_dataset_id is None:
                continue
            on_chain = node.exchange.datasets.dataset(dataset.chain_dataset_id)
            if on_chain.merkle_root != bytes.fromhex(dataset.merkle_root):
                problems.append(f"dataset {dataset.name}: chain dataset {dataset.chain_dataset_id} has root "
                                f"0x{on_chain.merkle_root.hex()}, the catalog 0x{dataset.merkle_root}")
            if on_chain.record_count != len(records):
                problems.append(f"dataset {dataset.name}: chain says {on_chain.record_count} records, "
                                f"the catalog holds {len(records)}")
            if on_chain.hospital != node.address:
                problems.append(f"dataset {dataset.name}: registered on chain by {on_chain.hospital}, not this node")
    return problems
