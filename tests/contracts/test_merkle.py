"""Merkle helper: OpenZeppelin's conventions, without a chain (the chain checks are elsewhere)."""

from __future__ import annotations

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak
from hypothesis import given
from hypothesis import strategies as st

from contracts.merkle import MerkleError, MerkleTree, hash_pair, leaf_hash, verify


def test_leaf_hash_is_openzeppelin_double_hash() -> None:
    expected = keccak(keccak(encode(["address", "uint256"], ["0x" + "11" * 20, 5])))
    assert leaf_hash(["address", "uint256"], ["0x" + "11" * 20, 5]) == expected


def test_pair_hash_is_commutative_and_sorted() -> None:
    a, b = keccak(b"a"), keccak(b"b")
    assert hash_pair(a, b) == hash_pair(b, a) == keccak(min(a, b) + max(a, b))


def test_single_leaf_is_its_own_root() -> None:
    leaf = keccak(b"only")
    tree = MerkleTree([leaf])
    assert (tree.root, tree.proof(leaf)) == (leaf, [])


@given(st.sets(st.binary(min_size=32, max_size=32), min_size=1, max_size=40))
def test_every_leaf_proves_and_root_ignores_order(leaves: set[bytes]) -> None:
    ordered = sorted(leaves)
    tree = MerkleTree(ordered)
    assert MerkleTree(reversed(ordered)).root == tree.root
    for leaf in leaves:
        assert verify(tree.root, leaf, tree.proof(leaf))


def test_wrong_leaf_does_not_verify() -> None:
    tree = MerkleTree(keccak(bytes([i])) for i in range(5))
    assert not verify(tree.root, keccak(b"intruder"), tree.proof(tree.leaves[0]))


@pytest.mark.parametrize(
    ("leaves", "message"),
    [
        ([], "at least one leaf"),
        ([b"short"], "has 5 bytes, expected 32"),
        ([keccak(b"x"), keccak(b"x")], "duplicate leaf"),
    ],
)
def test_bad_leaves_are_refused(leaves: list[bytes], message: str) -> None:
    with pytest.raises(MerkleError, match=message):
        MerkleTree(leaves)


def test_proof_of_absent_leaf_is_refused() -> None:
    with pytest.raises(MerkleError, match="is not in this tree"):
        MerkleTree([keccak(b"a")]).proof(keccak(b"b"))
