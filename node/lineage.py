"""A round's cohort manifest: which records this node trained on, and why each was allowed.

Per round, the node states its cohort's members (record id, kind, the patient's enrolled
address), the registered dataset that holds each record with the record's Merkle proof in it,
and, for each patient, the enrolment challenge they signed. With the chain, that is enough for
anyone to rebuild the cohort root the node anchored, to check every record against a dataset
root the hospital registered, and to check that each address's holder linked it to this
hospital. Format ``metai-cohort/1`` (docs/formats/lineage-bundle.md).

Nothing else about a patient is in it: no pseudonym, local id, label, path or date (the signed
challenge names only the hospital, a nonce and its own expiry, see :mod:`node.enrol`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address
from sqlalchemy import select

from contracts.leaves import record_leaf
from contracts.manifest import read_manifest
from contracts.merkle import MerkleTree
from node.catalog import Dataset, DatasetRecord, Enrolment, Record
from node.cohort import Cohort
from node.errors import NodeError
from node.kept_cohort import KeptCohort, kept_cohort_path
from node.node import Node
from tasks.protocol import COHORT_MANIFEST_FORMAT

_log = logging.getLogger(__name__)


class LineageError(NodeError, LookupError):
    """A cohort manifest cannot be made: a member's dataset is unknown here or does not rebuild its root."""


@dataclass(frozen=True)
class _Member:
    record_id: str
    kind: int
    patient: str
    dataset_id: int | None


def cohort_manifest(node: Node, cohort: Cohort, round_: int) -> dict[str, Any]:
    """The manifest of ``cohort``, trained on in ``round_`` of its study.

    Raises:
        LineageError: a member's dataset is not registered here, or its records do not rebuild its root.
    """
    members = [_Member(m.record_id, m.kind, m.patient, m.dataset_id) for m in cohort.members]
    return _manifest(node, cohort.study_id, round_, cohort.block, "0x" + cohort.root.hex(), members)


def kept_manifest(node: Node, kept: KeptCohort) -> dict[str, Any]:
    """The manifest of a round's kept cohort (the one sent with the round's reply, made again).

    Raises:
        LineageError: the cohort was kept by a version that did not record its members'
            datasets, or :func:`cohort_manifest` would refuse it.
    """
    members = [_Member(m.record_id, m.kind, m.patient, m.dataset_id) for m in kept.members]
    return _manifest(node, kept.study_id, kept.round, kept.block, kept.root, members)


def manifest_json(manifest: dict[str, Any]) -> str:
    """``manifest`` as the text sent and written: compact JSON, UTF-8 characters as they are."""
    return json.dumps(manifest, ensure_ascii=False, separators=(",", ":"))


def manifest_sha256(text: str) -> str:
    """The SHA-256 of the manifest's UTF-8 bytes, lowercase hex: how a lineage bundle lists the file."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sent_manifest_path(node_dir: Path, study_id: int, round_: int) -> Path:
    """Where the node keeps the manifest of ``round_`` of ``study_id`` exactly as it sent (or sealed) it."""
    return kept_cohort_path(node_dir, study_id, round_).with_name(f"manifest-{round_}.json")


def keep_sent_manifest(node_dir: Path, study_id: int, round_: int, text: str) -> Path:
    """Write the round's manifest as sent, atomically: in sealed mode the coordinator holds only its hash, so
    these bytes are what an auditor must get from the hospital."""
    path = sent_manifest_path(node_dir, study_id, round_)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        out.write(text.encode("utf-8"))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path


def read_sent_manifest(node_dir: Path, study_id: int, round_: int) -> str | None:
    """The manifest of the round as the node sent it, or None for a round anchored before manifests were kept."""
    try:
        return sent_manifest_path(node_dir, study_id, round_).read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None


def _manifest(node: Node, study_id: int, round_: int, block: int, root: str,
              members: Sequence[_Member]) -> dict[str, Any]:
    unknown = [m.record_id for m in members if m.dataset_id is None]
    if unknown:
        raise LineageError(
            f"round {round_} of study {study_id}: the kept cohort does not say which dataset holds {len(unknown)} of "
            f"its records (it was kept by an earlier version of the node), so no manifest can prove them"
        )
    ordered = sorted(members, key=lambda m: m.record_id)
    dataset_ids = sorted({int(m.dataset_id) for m in ordered if m.dataset_id is not None})
    proofs = _dataset_proofs(node, dataset_ids, ordered)
    deployment = read_manifest(node.dir / node.info.manifest)
    return {
        "format": COHORT_MANIFEST_FORMAT,
        "chain_id": deployment.chain_id,
        "study_registry": to_checksum_address(deployment.address("StudyRegistry")),
        "study_id": study_id,
        "round": round_,
        "hospital": to_checksum_address(node.address),
        "cohort_block": block,
        "cohort_root": root,
        "dataset_ids": dataset_ids,
        "members": [{"record_id": m.record_id, "kind": m.kind, "patient": m.patient, "dataset_id": m.dataset_id,
                     "dataset_proof": proofs[m.record_id]} for m in ordered],
        "enrolments": _enrolments(node, study_id, round_, sorted({m.patient for m in ordered})),
    }


def _dataset_proofs(node: Node, dataset_ids: Iterable[int], members: Sequence[_Member]) -> dict[str, list[str]]:
    """Each member's Merkle proof in its dataset's registered root, by record id."""
    proofs: dict[str, list[str]] = {}
    with node.sessions() as session:
        for chain_id in dataset_ids:
            dataset = session.scalar(select(Dataset).where(Dataset.chain_dataset_id == chain_id))
            if dataset is None:
                raise LineageError(f"chain dataset {chain_id} was not registered by this node's catalog; a cohort "
                                   "draws only on the node's own datasets")
            records = session.execute(
                select(Record.record_id, Record.kind).join(DatasetRecord, DatasetRecord.record_id == Record.record_id)
                .where(DatasetRecord.dataset_id == dataset.id)).all()
            tree = MerkleTree(record_leaf(r.record_id, r.kind) for r in records)
            if tree.root.hex() != dataset.merkle_root:
                raise LineageError(f"dataset {dataset.name} (chain dataset {chain_id}): its records in the catalog "
                                   f"make root 0x{tree.root.hex()}, it was registered as 0x{dataset.merkle_root}; "
                                   "run `metai-node verify`")
            for m in members:
                if m.dataset_id == chain_id:
                    leaf = record_leaf(m.record_id, m.kind)
                    if leaf not in tree:
                        raise LineageError(f"record {m.record_id} is not in dataset {dataset.name} (chain dataset "
                                           f"{chain_id}), which the cohort names for it")
                    proofs[m.record_id] = ["0x" + p.hex() for p in tree.proof(leaf)]
    return proofs


def _enrolments(node: Node, study_id: int, round_: int, patients: list[str]) -> list[dict[str, str]]:
    """The signed enrolment of each patient address, in address order (those the catalog keeps)."""
    wanted = set(patients)
    with node.sessions() as session:  # every row, not an IN over the patients: SQLite caps bound parameters
        kept = {e.address: e for e in session.scalars(select(Enrolment)) if e.address in wanted}
    missing = [p for p in patients if p not in kept]
    if missing:
        # Enrolled before signed challenges were kept: the link is real but unprovable to an auditor.
        _log.warning("round %s of study %s: %d patients of the cohort enrolled before this node kept signed "
                     "challenges, so the manifest cannot prove their link; have them enrol again "
                     "(`metai-node challenge`, then `metai-node enrol`)", round_, study_id, len(missing))
    return [{"patient": p, "challenge": kept[p].challenge, "signature": kept[p].signature}
            for p in patients if p in kept]
