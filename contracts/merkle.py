"""Merkle trees and proofs compatible with OpenZeppelin's ``MerkleProof``.

Pairs are hashed sorted (``keccak256(min(a, b) ++ max(a, b))``), as ``MerkleProof.verify``
expects, so a proof from :meth:`MerkleTree.proof` verifies on chain. Leaves follow
OpenZeppelin's ``StandardMerkleTree`` convention, ``keccak256(keccak256(abi.encode(values)))``,
whose double hash keeps a leaf from being mistaken for an inner node.
The tree sorts its leaves, so the root depends only on the *set* of leaves: a node and an
auditor who hold the same records compute the same root whatever order they list them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from contracts.errors import ChainError


class MerkleError(ChainError, ValueError):
    """A tree cannot be built from these leaves, or a leaf is not in it."""


def leaf_hash(types: Sequence[str], values: Sequence[Any]) -> bytes:
    """Hash one leaf: ``keccak256(keccak256(abi.encode(values)))`` with ABI ``types``."""
    return keccak(keccak(encode(list(types), list(values))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Hash two nodes in sorted order (OpenZeppelin's commutative keccak256)."""
    return keccak(a + b) if a < b else keccak(b + a)


def process_proof(leaf: bytes, proof: Iterable[bytes]) -> bytes:
    """Fold ``proof`` into ``leaf``, returning the root it implies."""
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node


def verify(root: bytes, leaf: bytes, proof: Iterable[bytes]) -> bool:
    """Whether ``proof`` shows ``leaf`` is in the tree with ``root``."""
    return process_proof(leaf, proof) == root


class MerkleTree:
    """A binary Merkle tree over a set of 32-byte leaf hashes.

    Parameters:
        leaves: the leaf hashes (already hashed, e.g. by :func:`leaf_hash`); order is ignored.

    Raises:
        MerkleError: no leaves, a leaf that is not 32 bytes, or a duplicate leaf.
    """

    def __init__(self, leaves: Iterable[bytes]) -> None:
        ordered = sorted(bytes(leaf) for leaf in leaves)
        if not ordered:
            raise MerkleError("a Merkle tree needs at least one leaf")
        for i, leaf in enumerate(ordered):
            if len(leaf) != 32:
                raise MerkleError(f"leaf 0x{leaf.hex()} has {len(leaf)} bytes, expected 32")
            if i and leaf == ordered[i - 1]:
                raise MerkleError(f"duplicate leaf 0x{leaf.hex()}")
        self._layers: list[list[bytes]] = [ordered]
        while len(self._layers[-1]) > 1:
            below = self._layers[-1]
            above = [hash_pair(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            if len(below) % 2:
                above.append(below[-1])  # an odd node moves up unchanged
            self._layers.append(above)
        self._index = {leaf: i for i, leaf in enumerate(ordered)}

    @property
    def root(self) -> bytes:
        """The 32-byte root."""
        return self._layers[-1][0]

    @property
    def leaves(self) -> list[bytes]:
        """The leaves in tree (sorted) order."""
        return list(self._layers[0])

    def __len__(self) -> int:
        return len(self._layers[0])

    def __contains__(self, leaf: object) -> bool:
        return leaf in self._index

    def proof(self, leaf: bytes) -> list[bytes]:
        """Return the sibling hashes from ``leaf`` up to the root.

        Raises:
            MerkleError: ``leaf`` is not in the tree.
        """
        try:
            i = self._index[bytes(leaf)]
        except KeyError:
            raise MerkleError(f"leaf 0x{bytes(leaf).hex()} is not in this tree") from None
        path = []
        for layer in self._layers[:-1]:
            sibling = i ^ 1
            if sibling < len(layer):
                path.append(layer[sibling])
            i //= 2
        return path
