"""The hashes an audit recomputes, implemented here from the published formats alone.

This is a second implementation on purpose: it follows ``docs/formats/record-leaf.md`` (record
and cohort leaves, the sorted-pair Merkle tree) and ``tasks/train.py``'s documented weights
serialisation, without importing the code that produced them, so a mistake in one
implementation shows up as a disagreement instead of being repeated.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence

import numpy as np
from eth_abi.abi import encode
from eth_utils.crypto import keccak

__all__ = ["cohort_leaf", "merkle_root", "record_leaf", "sha256_file", "verify_proof", "weights_hash"]

_WEIGHTS_MAGIC = b"metai-weights/1\n"


def _leaf(types: list[str], values: list[object]) -> bytes:
    return keccak(keccak(encode(types, values)))


def record_leaf(record_id: str, kind: int) -> bytes:
    """A dataset leaf: keccak256(keccak256(abi.encode(bytes32 recordId, uint8 kind)))."""
    return _leaf(["bytes32", "uint8"], [bytes.fromhex(record_id), kind])


def cohort_leaf(record_id: str, kind: int, patient: str) -> bytes:
    """A cohort leaf: the record leaf's values and the patient's address."""
    return _leaf(["bytes32", "uint8", "address"], [bytes.fromhex(record_id), kind, patient])


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def merkle_root(leaves: Iterable[bytes]) -> bytes:
    """The root over ``leaves``: sorted, paired level by level, an odd last node moving up as is.

    Raises:
        ValueError: no leaves, or a leaf repeated (the producers never build such a tree).
    """
    level = sorted(leaves)
    if not level:
        raise ValueError("no leaves")
    if len(set(level)) != len(level):
        raise ValueError("a leaf is repeated")
    while len(level) > 1:
        up = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            up.append(level[-1])
        level = up
    return level[0]


def verify_proof(root: bytes, leaf: bytes, proof: Sequence[bytes]) -> bool:
    """Whether folding ``proof`` (siblings from the leaf up, sorted pairs) into ``leaf`` gives ``root``."""
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root


def weights_hash(arrays: Sequence[np.ndarray]) -> bytes:
    """keccak256 of the canonical serialisation of a model's arrays (format ``metai-weights/1``).

    Per array: the little-endian dtype string's length and text, the number of dimensions and
    each dimension (uint64 little endian), then the values in C order as little-endian bytes.
    """
    parts = [_WEIGHTS_MAGIC, struct.pack("<Q", len(arrays))]
    for array in arrays:
        a = np.asarray(array)
        if a.dtype.kind in "OV":
            raise ValueError(f"array of dtype {a.dtype} has no canonical bytes")
        little = a.astype(a.dtype.newbyteorder("<"), copy=False)
        dtype = little.dtype.str.encode("ascii")
        parts += [struct.pack("<Q", len(dtype)), dtype, struct.pack("<Q", a.ndim)]
        parts += [struct.pack("<Q", d) for d in a.shape]
        parts.append(np.ascontiguousarray(little).tobytes())
    return keccak(b"".join(parts))


def sha256_file(data: bytes) -> str:
    """The SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()
