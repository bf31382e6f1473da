"""Proofs built by the Merkle client verify on chain whatever order the leaves were listed in.

A node and an auditor may list the same records in different orders; the tree sorts its leaves
so both get one root. Here the root is computed by the test's own tree
(tests/contracts/merkle_reference.py), anchored on chain, and every proof from trees built over
the same leaves in other orders must verify against it with OpenZeppelin's ``MerkleProof``.
"""

from __future__ import annotations

import random

import pytest

from contracts.datause import Kind
from contracts.exchange import Exchange
from contracts.leaves import cohort_leaf, record_leaf
from contracts.merkle import MerkleError, MerkleTree
from tests.contracts.merkle_reference import reference_leaf, reference_root

SIZES = (1, 2, 3, 5, 8, 13)  # odd sizes promote a last node; 8 is a full tree


def _leaves(n: int) -> list[bytes]:
    # Record leaves (content sha256, kind) of made-up contents, in their generated order.
    return [reference_leaf(["bytes32", "uint8"], [bytes([n, i]) * 16, 1 + i % 4]) for i in range(n)]


def _orders(leaves: list[bytes]) -> dict[str, list[bytes]]:
    shuffled = list(leaves)
    random.Random(11).shuffle(shuffled)
    return {
        "as generated": list(leaves),
        "sorted": sorted(leaves),
        "reverse sorted": sorted(leaves, reverse=True),
        "shuffled (seed 11)": shuffled,
        "odd then even positions": leaves[1::2] + leaves[::2],
    }


@pytest.mark.parametrize("n", SIZES)
def test_root_is_the_reference_root_in_every_input_order(n: int) -> None:
    leaves = _leaves(n)
    want = reference_root(leaves)
    assert {name: MerkleTree(order).root for name, order in _orders(leaves).items()} == {
        name: want for name in _orders(leaves)}


def test_proofs_from_every_input_order_verify_on_chain(exchange: Exchange, actors) -> None:
    verified: dict[tuple[int, str], list[bool]] = {}
    for n in SIZES:
        leaves = _leaves(n)
        dataset_id, _ = exchange.datasets.register(actors.hospital, reference_root(leaves), n, Kind.IMAGE, "CT",
                                                   synthetic=True)
        for name, order in _orders(leaves).items():
            tree = MerkleTree(order)
            verified[(n, name)] = [exchange.datasets.contains_record(dataset_id, leaf, tree.proof(leaf))
                                   for leaf in leaves]
    assert verified == {key: [True] * key[0] for key in verified}


def test_a_proof_does_not_verify_for_a_leaf_outside_the_set(exchange: Exchange, actors) -> None:
    leaves = _leaves(5)
    dataset_id, _ = exchange.datasets.register(actors.hospital, reference_root(leaves), 5, Kind.IMAGE, "CT",
                                               synthetic=True)
    outsider = reference_leaf(["bytes32", "uint8"], [b"\xee" * 32, 1])
    tree = MerkleTree(reversed(leaves))
    assert [exchange.datasets.contains_record(dataset_id, outsider, tree.proof(leaf)) for leaf in leaves] == [
        False] * 5


def test_node_leaves_follow_the_documented_encoding() -> None:
    content = bytes(range(32))
    patient = "0x" + "ab" * 20
    assert record_leaf(content.hex(), 2) == reference_leaf(["bytes32", "uint8"], [content, 2])
    assert cohort_leaf(content.hex(), 2, patient) == reference_leaf(["bytes32", "uint8", "address"],
                                                                   [content, 2, patient])


@pytest.mark.parametrize("order", [(0, 1, 0), (0, 1, 2, 1), (2, 0, 1, 3, 2)])
def test_duplicate_leaf_is_refused_wherever_it_is_listed(order: tuple[int, ...]) -> None:
    leaves = _leaves(4)
    listed = [leaves[i] for i in order]
    duplicate = next(leaf for k, leaf in enumerate(listed) if leaf in listed[:k])
    with pytest.raises(MerkleError, match=f"duplicate leaf 0x{duplicate.hex()}"):
        MerkleTree(listed)
