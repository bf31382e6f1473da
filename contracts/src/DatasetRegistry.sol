// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {DataUse} from "./DataUse.sol";
import {RoleGated} from "./RoleGated.sol";
import {Roles} from "./Roles.sol";

/**
 * @title DatasetRegistry
 * @notice Provenance of the data held by hospitals: each dataset is anchored as the Merkle
 * root over its record leaves, with its size, data kind, modality, whether it is synthetic, and,
 * for derived data, its parent datasets and the hash of the transform that produced it.
 * @dev The gas of a registration does not depend on the number of records: only the root and
 * the count are stored. Parents are emitted in full and committed to in state by one hash.
 * Record leaves follow OpenZeppelin's double-hashed leaf convention (see the node's
 * docs/formats/record-leaf.md) and proofs are checked with {MerkleProof}.
 */
contract DatasetRegistry is RoleGated {
    /// @notice A registered dataset.
    struct Dataset {
        bytes32 merkleRoot;
        address hospital;
        uint64 recordCount;
        uint8 kinds;
        bool synthetic;
        bytes16 modality;
        uint64 registeredAtBlock;
        bytes32 provenanceHash; // keccak256(abi.encode(parents, transformHash)); 0 if not derived
    }

    uint256 private _nextId = 1; // starts non-zero so no registration pays for a fresh slot
    mapping(uint256 datasetId => Dataset) private _datasets;
    mapping(bytes32 root => uint256 datasetId) private _byRoot;

    /// @notice `hospital` registered dataset `datasetId`.
    event DatasetRegistered(
        uint256 indexed datasetId,
        address indexed hospital,
        bytes32 indexed merkleRoot,
        uint64 recordCount,
        uint8 kinds,
        bytes16 modality,
        bool synthetic,
        uint256[] parents,
        bytes32 transformHash
    );

    /// @notice The Merkle root is zero.
    error DatasetRegistryZeroRoot();
    /// @notice A dataset must hold at least one record; `recordCount` was given.
    error DatasetRegistryNoRecords(uint64 recordCount);
    /// @notice `kinds` is empty or has bits outside the defined data kinds.
    error DatasetRegistryInvalidKinds(uint8 kinds);
    /// @notice The modality code is empty.
    error DatasetRegistryNoModality();
    /// @notice `merkleRoot` is already registered, as dataset `datasetId` of `hospital`.
    error DatasetRegistryDuplicateRoot(address hospital, bytes32 merkleRoot, uint256 datasetId);
    /// @notice Parent dataset `parentId` does not exist.
    error DatasetRegistryUnknownParent(uint256 parentId);
    /// @notice A derived dataset (with parents) needs the hash of its transform.
    error DatasetRegistryMissingTransform();
    /// @notice A transform hash was given for a dataset without parents.
    error DatasetRegistryTransformWithoutParents(bytes32 transformHash);
    /// @notice Dataset `datasetId` does not exist.
    error DatasetRegistryUnknownDataset(uint256 datasetId);

    /**
     * @notice Deploy the registry, gated by the roles held in `roles_`.
     * @dev Emits no event. Reverts with {RoleGatedZeroRegistry} if `roles_` is the zero address.
     * @param roles_ The consortium role registry.
     */
    constructor(IAccessControl roles_) RoleGated(roles_) {}

    /**
     * @notice Register a dataset of the calling hospital. Only an account holding the hospital
     * role may call; the caller is recorded as the dataset's hospital.
     * @dev A root is registered once in the whole consortium: it names one set of records, so a
     * second registration, by the same hospital or another, would be a second claim on the same
     * records (a copy passed off as a hospital's own, or one dataset counted twice). Leaves are
     * content hashes of de-identified records, which carry each hospital's own pseudonyms, so two
     * hospitals' genuine datasets do not share a root. Parents may belong to any hospital and are
     * not checked for repeats.
     *
     * Emits a {DatasetRegistered} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the hospital
     * role in the {roles} registry.
     * Reverts with {DatasetRegistryZeroRoot} if `merkleRoot` is zero.
     * Reverts with {DatasetRegistryNoRecords} if `recordCount` is zero.
     * Reverts with {DatasetRegistryInvalidKinds} if `kinds` is empty or has bits outside the
     * defined data kinds.
     * Reverts with {DatasetRegistryNoModality} if `modality` is empty (all zero bytes).
     * Reverts with {DatasetRegistryDuplicateRoot} if `merkleRoot` is already registered, by any
     * hospital.
     * Reverts with {DatasetRegistryMissingTransform} if `parents` is not empty but
     * `transformHash` is zero.
     * Reverts with {DatasetRegistryUnknownParent} if an entry of `parents` is 0 or not yet
     * registered.
     * Reverts with {DatasetRegistryTransformWithoutParents} if `parents` is empty but
     * `transformHash` is not zero.
     *
     * @param merkleRoot Root of the Merkle tree over the record leaves.
     * @param recordCount Number of records (leaves).
     * @param kinds Bit set of data kinds in the dataset (DataUse.KIND_*).
     * @param modality DICOM modality code, left-aligned ASCII (e.g. "CT", "MR").
     * @param synthetic Whether the records are synthetic (phantoms, simulations).
     * @param parents Datasets this one was derived from; empty if original.
     * @param transformHash Hash of the transform applied to the parents; zero if original.
     * @return datasetId The new dataset's id (starting at 1).
     */
    function register(
        bytes32 merkleRoot,
        uint64 recordCount,
        uint8 kinds,
        bytes16 modality,
        bool synthetic,
        uint256[] calldata parents,
        bytes32 transformHash
    ) external onlyRole(Roles.HOSPITAL) returns (uint256 datasetId) {
        if (merkleRoot == bytes32(0)) revert DatasetRegistryZeroRoot();
        if (recordCount == 0) revert DatasetRegistryNoRecords(recordCount);
        if (!DataUse.validKinds(kinds)) revert DatasetRegistryInvalidKinds(kinds);
        if (modality == bytes16(0)) revert DatasetRegistryNoModality();
        uint256 existing = _byRoot[merkleRoot];
        if (existing != 0) revert DatasetRegistryDuplicateRoot(_datasets[existing].hospital, merkleRoot, existing);

        bytes32 provenanceHash;
        if (parents.length > 0) {
            if (transformHash == bytes32(0)) revert DatasetRegistryMissingTransform();
            uint256 next = _nextId;
            for (uint256 i = 0; i < parents.length; ++i) {
                if (parents[i] == 0 || parents[i] >= next) revert DatasetRegistryUnknownParent(parents[i]);
            }
            provenanceHash = keccak256(abi.encode(parents, transformHash));
        } else if (transformHash != bytes32(0)) {
            revert DatasetRegistryTransformWithoutParents(transformHash);
        }

        datasetId = _nextId++;
        Dataset storage d = _datasets[datasetId];
        d.merkleRoot = merkleRoot;
        d.hospital = msg.sender;
        d.recordCount = recordCount;
        d.kinds = kinds;
        d.synthetic = synthetic;
        d.modality = modality;
        d.registeredAtBlock = uint64(block.number);
        if (provenanceHash != bytes32(0)) d.provenanceHash = provenanceHash; // original data: slot stays empty
        _byRoot[merkleRoot] = datasetId;
        emit DatasetRegistered(
            datasetId, msg.sender, merkleRoot, recordCount, kinds, modality, synthetic, parents, transformHash
        );
    }

    /// @notice The dataset `datasetId`; reverts if it does not exist.
    function dataset(uint256 datasetId) external view returns (Dataset memory) {
        if (datasetId == 0 || datasetId >= _nextId) revert DatasetRegistryUnknownDataset(datasetId);
        return _datasets[datasetId];
    }

    /// @notice The number of datasets registered so far (ids run from 1 to this).
    function datasetCount() external view returns (uint256) {
        return _nextId - 1;
    }

    /// @notice The id `merkleRoot` is registered under, or 0.
    function datasetIdOf(bytes32 merkleRoot) external view returns (uint256) {
        return _byRoot[merkleRoot];
    }

    /// @notice The hospital that registered dataset `datasetId`, or the zero address if none did.
    /// @dev One storage read: the study registry asks it for every dataset a contribution names.
    function hospitalOf(uint256 datasetId) external view returns (address) {
        return _datasets[datasetId].hospital;
    }

    /**
     * @notice Whether `leaf` is a record of dataset `datasetId`, by Merkle `proof`.
     * @param leaf The double-hashed record leaf.
     * @param proof Sibling hashes from the leaf up (OpenZeppelin sorted-pair convention).
     */
    function containsRecord(uint256 datasetId, bytes32 leaf, bytes32[] calldata proof) external view returns (bool) {
        if (datasetId == 0 || datasetId >= _nextId) revert DatasetRegistryUnknownDataset(datasetId);
        return MerkleProof.verifyCalldata(proof, _datasets[datasetId].merkleRoot, leaf);
    }
}
