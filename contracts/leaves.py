"""Merkle leaves of records (datasets) and of cohort members (study rounds).

The encodings are specified in ``docs/formats/record-leaf.md``; both use OpenZeppelin's
double-hashed leaf, ``keccak256(keccak256(abi.encode(...)))``, so the on-chain
``containsRecord`` / ``inCohort`` views verify proofs built by :class:`contracts.merkle.MerkleTree`.
"""

from __future__ import annotations

from contracts.merkle import leaf_hash

RECORD_LEAF_TYPES = ("bytes32", "uint8")
COHORT_LEAF_TYPES = ("bytes32", "uint8", "address")


def record_leaf(record_id: str, kind: int) -> bytes:
    """Leaf of a record in a dataset: (content sha256, data kind)."""
    return leaf_hash(RECORD_LEAF_TYPES, [bytes.fromhex(record_id), kind])


def cohort_leaf(record_id: str, kind: int, patient: str) -> bytes:
    """Leaf of a record in a round's cohort: (content sha256, data kind, patient address)."""
    return leaf_hash(COHORT_LEAF_TYPES, [bytes.fromhex(record_id), kind, patient])
