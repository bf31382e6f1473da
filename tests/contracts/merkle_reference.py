"""The test suite's own Merkle tree, written from docs/formats/record-leaf.md, to check against.

It shares no code with :mod:`contracts.merkle`: leaves are sorted bytewise, paired level by
level, a pair hashes as ``keccak256(min ++ max)``, an odd node at the end of a level moves up
unchanged, and a leaf is ``keccak256(keccak256(abi.encode(values)))``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak


def reference_leaf(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """OpenZeppelin's StandardMerkleTree leaf of ``values``."""
    return keccak(keccak(encode(list(types), list(values))))


def reference_root(leaves: Iterable[bytes]) -> bytes:
    """The root the documented tree has over the set ``leaves``."""
    level = sorted(leaves)
    assert level, "a tree needs a leaf"
    while len(level) > 1:
        pairs = [level[k : k + 2] for k in range(0, len(level), 2)]
        level = [keccak(min(p) + max(p)) if len(p) == 2 else p[0] for p in pairs]
    return level[0]
