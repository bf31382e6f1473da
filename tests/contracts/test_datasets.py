"""DatasetRegistry against a real Anvil: registration, provenance, record proofs."""

from __future__ import annotations

from eth_utils.crypto import keccak

from contracts.datause import Kind
from contracts.events import DatasetRegistered
from contracts.exchange import Exchange
from contracts.merkle import MerkleTree, leaf_hash
from contracts.roles import Role


def tree_of(n: int, salt: int = 0) -> MerkleTree:
    return MerkleTree(leaf_hash(["uint256", "uint256"], [salt, i]) for i in range(n))


def test_register_emits_event_and_stores_dataset(exchange: Exchange, actors) -> None:
    tree = tree_of(5)
    dataset_id, tx = exchange.datasets.register(actors.hospital, tree.root, 5, Kind.CT_SINOGRAM, "CT", synthetic=True)
    event = tx.event(DatasetRegistered)
    assert (event.dataset_id, event.hospital, event.merkle_root, event.record_count) == (
        1, actors.hospital.address, tree.root, 5)
    assert (event.kinds, event.modality, event.synthetic, event.parents, event.transform_hash) == (
        Kind.CT_SINOGRAM, "CT", True, (), bytes(32))
    stored = exchange.datasets.dataset(dataset_id)
    assert (stored.merkle_root, stored.hospital, stored.modality, stored.registered_at_block) == (
        tree.root, actors.hospital.address, "CT", tx.block_number)
    assert exchange.datasets.count() == 1
    assert exchange.datasets.id_of(tree.root) == dataset_id


def test_derived_dataset_records_parents_and_transform(exchange: Exchange, actors) -> None:
    raw_id, _ = exchange.datasets.register(actors.hospital, tree_of(3).root, 3, Kind.CT_SINOGRAM, "CT", synthetic=True)
    transform = keccak(text="raw_data.fbp ramp v1")
    derived_id, tx = exchange.datasets.register(
        actors.hospital, tree_of(3, salt=1).root, 3, Kind.IMAGE | Kind.DERIVED, "CT",
        synthetic=True, parents=[raw_id], transform_hash=transform,
    )
    event = tx.event(DatasetRegistered)
    assert (event.parents, event.transform_hash) == ((raw_id,), transform)
    from eth_abi import encode
    assert exchange.datasets.dataset(derived_id).provenance_hash == keccak(
        encode(["uint256[]", "bytes32"], [[raw_id], transform]))


def test_gas_does_not_depend_on_record_count(exchange: Exchange, actors) -> None:
    _, small = exchange.datasets.register(actors.hospital, tree_of(1).root, 1, Kind.IMAGE, "MR", synthetic=True)
    _, large = exchange.datasets.register(actors.hospital, tree_of(1000, 2).root, 100_000, Kind.IMAGE, "MR",
                                          synthetic=True)
    # Only calldata differs: the count's extra non-zero bytes cost 12 gas each.
    assert abs(large.gas_used - small.gas_used) <= 3 * 12


def test_non_hospital_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    with expect_revert("AccessControlUnauthorizedAccount", account=actors.stranger.address,
                       neededRole=Role.HOSPITAL.value):
        exchange.datasets.register(actors.stranger, tree_of(1).root, 1, Kind.IMAGE, "CT", synthetic=True)


def test_revoked_hospital_role_takes_effect(exchange: Exchange, actors, expect_revert) -> None:
    exchange.roles.revoke(actors.admin, Role.HOSPITAL, actors.hospital2.address)
    with expect_revert("AccessControlUnauthorizedAccount", account=actors.hospital2.address):
        exchange.datasets.register(actors.hospital2, tree_of(1).root, 1, Kind.IMAGE, "CT", synthetic=True)


def test_duplicate_root_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    root = tree_of(2).root
    first, _ = exchange.datasets.register(actors.hospital, root, 2, Kind.IMAGE, "CT", synthetic=True)
    with expect_revert("DatasetRegistryDuplicateRoot", hospital=actors.hospital.address, merkleRoot=root,
                       datasetId=first):
        exchange.datasets.register(actors.hospital, root, 2, Kind.IMAGE, "CT", synthetic=True)


def test_malformed_registrations_are_refused(exchange: Exchange, actors, expect_revert) -> None:
    h, root = actors.hospital, tree_of(2).root
    with expect_revert("DatasetRegistryZeroRoot"):
        exchange.datasets.register(h, bytes(32), 2, Kind.IMAGE, "CT", synthetic=True)
    with expect_revert("DatasetRegistryNoRecords", recordCount=0):
        exchange.datasets.register(h, root, 0, Kind.IMAGE, "CT", synthetic=True)
    with expect_revert("DatasetRegistryInvalidKinds", kinds=32):
        exchange.datasets.register(h, root, 2, Kind(0) | 32, "CT", synthetic=True)  # type: ignore[operator]
    with expect_revert("DatasetRegistryUnknownParent", parentId=9):
        exchange.datasets.register(h, root, 2, Kind.IMAGE, "CT", synthetic=True, parents=[9],
                                   transform_hash=keccak(b"t"))
    with expect_revert("DatasetRegistryTransformWithoutParents", transformHash=keccak(b"t")):
        exchange.datasets.register(h, root, 2, Kind.IMAGE, "CT", synthetic=True, transform_hash=keccak(b"t"))


def test_parents_without_transform_are_refused(exchange: Exchange, actors, expect_revert) -> None:
    parent, _ = exchange.datasets.register(actors.hospital, tree_of(2).root, 2, Kind.IMAGE, "CT", synthetic=True)
    with expect_revert("DatasetRegistryMissingTransform"):
        exchange.datasets.register(actors.hospital, tree_of(2, 1).root, 2, Kind.IMAGE, "CT", synthetic=True,
                                   parents=[parent])


def test_unknown_dataset_is_refused(exchange: Exchange, expect_revert) -> None:
    with expect_revert("DatasetRegistryUnknownDataset", datasetId=3):
        exchange.datasets.dataset(3)


def test_python_merkle_proofs_verify_on_chain(exchange: Exchange, actors) -> None:
    tree = tree_of(13)  # odd sizes exercise the promoted last node
    dataset_id, _ = exchange.datasets.register(actors.hospital, tree.root, 13, Kind.IMAGE, "CT", synthetic=True)
    for leaf in tree.leaves:
        assert exchange.datasets.contains_record(dataset_id, leaf, tree.proof(leaf))


def test_wrong_leaf_is_rejected_on_chain(exchange: Exchange, actors) -> None:
    tree = tree_of(8)
    dataset_id, _ = exchange.datasets.register(actors.hospital, tree.root, 8, Kind.IMAGE, "CT", synthetic=True)
    stranger_leaf = leaf_hash(["uint256", "uint256"], [99, 99])
    assert not exchange.datasets.contains_record(dataset_id, stranger_leaf, tree.proof(tree.leaves[0]))
    assert not exchange.datasets.contains_record(dataset_id, tree.leaves[1], tree.proof(tree.leaves[0]))
