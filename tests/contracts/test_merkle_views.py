"""What a Merkle tree tells about itself: its size, its leaves in tree order, membership, folding."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from contracts.merkle import MerkleError, MerkleTree, process_proof, verify
from tests.contracts.merkle_reference import reference_root

LEAVES = [keccak(bytes([i])) for i in (9, 3, 7, 1, 5)]


def test_size_and_leaves_in_sorted_order() -> None:
    tree = MerkleTree(LEAVES)
    assert (len(tree), tree.leaves) == (5, sorted(LEAVES))


@pytest.mark.parametrize(("candidate", "member"), [(LEAVES[0], True), (LEAVES[4], True),
                                                   (keccak(b"outsider"), False), ("not bytes", False)])
def test_membership(candidate: object, member: bool) -> None:
    assert (candidate in MerkleTree(LEAVES)) is member


def test_folding_a_proof_gives_the_reference_root() -> None:
    tree = MerkleTree(LEAVES)
    want = reference_root(LEAVES)
    assert [process_proof(leaf, tree.proof(leaf)) for leaf in LEAVES] == [want] * 5
    assert [verify(keccak(b"another root"), leaf, tree.proof(leaf)) for leaf in LEAVES] == [False] * 5


def test_an_empty_tree_is_refused_with_the_reason() -> None:
    with pytest.raises(MerkleError, match=r"^a Merkle tree needs at least one leaf$"):
        MerkleTree([])
