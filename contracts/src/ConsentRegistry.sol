// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {Nonces} from "@openzeppelin/contracts/utils/Nonces.sol";
import {DataUse} from "./DataUse.sol";

/**
 * @title ConsentRegistry
 * @notice Patients grant and revoke consent for the research use of their data, either
 * directly from an address they control or by an EIP-712 signature that anyone may relay
 * (the coordinator does). Nodes ask the batch view which patients permit a use now.
 * @dev A consent is keyed by (patient, scope); the scope is a hospital (or the zero address
 * for any hospital), a DUO purpose with its disease code, and a study id (0 for any study with
 * that purpose). Granting again under the same scope replaces kinds and expiry. Nothing
 * personal is stored: only the patient's pseudonymous address, codes and block numbers.
 * Relayed calls follow the shape of ERC20Permit with an explicit nonce, so that a replay fails
 * with OpenZeppelin's `InvalidAccountNonce(account, currentNonce)`.
 */
contract ConsentRegistry is EIP712, Nonces {
    /// @notice Where a consent applies.
    struct Scope {
        address hospital; // zero address: any hospital
        uint8 purpose; // DataUse.PURPOSE_*
        uint32 disease; // disease code for PURPOSE_DS, else 0
        uint256 studyId; // 0: any study with this purpose
    }

    /// @notice A use of data a node wants to make, asked of the view functions.
    struct Use {
        address hospital;
        uint8 kinds; // every kind in this set must be covered
        uint8 purpose;
        uint32 disease;
        uint256 studyId;
    }

    /// @notice A stored consent (one storage slot).
    struct Consent {
        uint8 kinds;
        uint64 expiresAt; // unix seconds, exclusive
        uint64 grantedAtBlock;
        uint64 revokedAtBlock; // 0 while in force
    }

    bytes32 private constant _GRANT_TYPEHASH = keccak256(
        "ConsentGrant(address patient,address hospital,uint8 purpose,uint32 disease,uint256 studyId,uint8 kinds,uint64 expiresAt,uint256 nonce,uint256 deadline)"
    );
    bytes32 private constant _REVOKE_TYPEHASH = keccak256(
        "ConsentRevoke(address patient,address hospital,uint8 purpose,uint32 disease,uint256 studyId,uint256 nonce,uint256 deadline)"
    );

    mapping(bytes32 consentId => Consent) private _consents;

    /// @notice `patient` granted (or renewed) consent `consentId` for `kinds` until `expiresAt`.
    event ConsentGranted(
        address indexed patient,
        bytes32 indexed consentId,
        address indexed hospital,
        uint8 purpose,
        uint32 disease,
        uint256 studyId,
        uint8 kinds,
        uint64 expiresAt
    );

    /// @notice `patient` revoked consent `consentId`; it no longer permits use from this block.
    event ConsentRevoked(address indexed patient, bytes32 indexed consentId);

    /// @notice `kinds` is empty or has bits outside the defined data kinds.
    error ConsentRegistryInvalidKinds(uint8 kinds);
    /// @notice (`purpose`, `disease`) is not a defined purpose code.
    error ConsentRegistryInvalidPurpose(uint8 purpose, uint32 disease);
    /// @notice The consent's expiry `expiresAt` is not after the current time `nowTimestamp`.
    error ConsentRegistryExpiryInPast(uint64 expiresAt, uint256 nowTimestamp);
    /// @notice The signature's `deadline` has passed (`nowTimestamp`).
    error ConsentRegistryExpiredSignature(uint256 deadline, uint256 nowTimestamp);
    /// @notice The signature is malformed; it cannot be attributed to `patient`.
    error ConsentRegistryInvalidSignature(address patient);
    /// @notice The signature was made by `signer`, not by `patient`.
    error ConsentRegistryInvalidSigner(address signer, address patient);
    /// @notice `patient` never granted consent `consentId`.
    error ConsentRegistryNotGranted(address patient, bytes32 consentId);
    /// @notice Consent `consentId` of `patient` was revoked in block `revokedAtBlock`.
    error ConsentRegistryConsentRevoked(address patient, bytes32 consentId, uint64 revokedAtBlock);
    /// @notice Consent `consentId` of `patient` expired at `expiresAt`.
    error ConsentRegistryConsentExpired(address patient, bytes32 consentId, uint64 expiresAt);
    /// @notice Consent `consentId` of `patient` covers `granted` kinds, not all of `requested`.
    error ConsentRegistryKindsNotCovered(address patient, bytes32 consentId, uint8 granted, uint8 requested);
    /// @notice No consent of `patient` matches the use's hospital, purpose and study.
    error ConsentRegistryNoMatchingConsent(address patient);

    constructor() EIP712("MeTAI ConsentRegistry", "1") {}

    // ---------------------------------------------------------------- grant / revoke

    /**
     * @notice Grant consent from the patient's own address.
     * @param scope Hospital, purpose and study the consent applies to.
     * @param kinds Bit set of data kinds covered.
     * @param expiresAt Unix time (seconds) at which the consent lapses.
     */
    function grant(Scope calldata scope, uint8 kinds, uint64 expiresAt) external {
        _grant(msg.sender, scope, kinds, expiresAt);
    }

    /**
     * @notice Grant consent on behalf of `patient`, who signed the EIP-712 `ConsentGrant`.
     * @dev Anyone may relay. Reverts on a passed deadline, a bad or foreign signature and a
     * nonce that is not the patient's current one (replay).
     */
    function grantBySig(
        address patient,
        Scope calldata scope,
        uint8 kinds,
        uint64 expiresAt,
        uint256 nonce,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        if (block.timestamp > deadline) revert ConsentRegistryExpiredSignature(deadline, block.timestamp);
        bytes32 structHash = keccak256(
            abi.encode(
                _GRANT_TYPEHASH,
                patient,
                scope.hospital,
                scope.purpose,
                scope.disease,
                scope.studyId,
                kinds,
                expiresAt,
                nonce,
                deadline
            )
        );
        _checkSigner(patient, structHash, v, r, s);
        _useCheckedNonce(patient, nonce);
        _grant(patient, scope, kinds, expiresAt);
    }

    /**
     * @notice Revoke the caller's consent under `scope`, effective from this block.
     * @param scope The scope the consent was granted under.
     */
    function revoke(Scope calldata scope) external {
        _revoke(msg.sender, scope);
    }

    /**
     * @notice Revoke consent on behalf of `patient`, who signed the EIP-712 `ConsentRevoke`.
     * @dev Anyone may relay; same checks as {grantBySig}.
     */
    function revokeBySig(
        address patient,
        Scope calldata scope,
        uint256 nonce,
        uint256 deadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external {
        if (block.timestamp > deadline) revert ConsentRegistryExpiredSignature(deadline, block.timestamp);
        bytes32 structHash = keccak256(
            abi.encode(
                _REVOKE_TYPEHASH, patient, scope.hospital, scope.purpose, scope.disease, scope.studyId, nonce, deadline
            )
        );
        _checkSigner(patient, structHash, v, r, s);
        _useCheckedNonce(patient, nonce);
        _revoke(patient, scope);
    }

    // ---------------------------------------------------------------- views

    /// @notice The EIP-712 domain separator used for relayed consent.
    // solhint-disable-next-line func-name-mixedcase
    function DOMAIN_SEPARATOR() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice The identifier of `patient`'s consent under `scope`.
    function consentId(address patient, Scope calldata scope) public pure returns (bytes32) {
        return _id(patient, scope.hospital, scope.purpose, scope.disease, scope.studyId);
    }

    /// @notice The stored consent of `patient` under `scope` (all zero if never granted).
    function consentOf(address patient, Scope calldata scope) external view returns (Consent memory) {
        return _consents[consentId(patient, scope)];
    }

    /// @notice Whether `patient` permits `use` now (at this block and time).
    function permits(address patient, Use calldata use) external view returns (bool) {
        _checkUse(use);
        return _permits(patient, use);
    }

    /**
     * @notice For each of `patients`, whether they permit `use` now.
     * @dev A view: callers chunk long lists to stay within their node's call gas cap.
     */
    function permitsBatch(address[] calldata patients, Use calldata use) external view returns (bool[] memory result) {
        _checkUse(use);
        result = new bool[](patients.length);
        for (uint256 i = 0; i < patients.length; ++i) {
            result[i] = _permits(patients[i], use);
        }
    }

    /**
     * @notice Revert with the reason `patient` does not permit `use` now; return if they do.
     * @dev Explains a refusal to a patient or an auditor. When several consents match the use
     * but none permits it, the reason given is that of the most specific one.
     */
    function explain(address patient, Use calldata use) external view {
        _checkUse(use);
        bytes32[12] memory ids;
        uint256 n = _candidates(patient, use, ids);
        for (uint256 i = 0; i < n; ++i) {
            Consent memory c = _consents[ids[i]];
            if (_inForce(c, use.kinds)) return;
        }
        for (uint256 i = 0; i < n; ++i) {
            Consent memory c = _consents[ids[i]];
            if (c.grantedAtBlock == 0) continue;
            if (c.revokedAtBlock != 0) revert ConsentRegistryConsentRevoked(patient, ids[i], c.revokedAtBlock);
            if (c.expiresAt <= block.timestamp) revert ConsentRegistryConsentExpired(patient, ids[i], c.expiresAt);
            revert ConsentRegistryKindsNotCovered(patient, ids[i], c.kinds, use.kinds);
        }
        revert ConsentRegistryNoMatchingConsent(patient);
    }

    // ---------------------------------------------------------------- internals

    function _grant(address patient, Scope calldata scope, uint8 kinds, uint64 expiresAt) private {
        if (!DataUse.validKinds(kinds)) revert ConsentRegistryInvalidKinds(kinds);
        if (!DataUse.validPurpose(scope.purpose, scope.disease)) {
            revert ConsentRegistryInvalidPurpose(scope.purpose, scope.disease);
        }
        if (expiresAt <= block.timestamp) revert ConsentRegistryExpiryInPast(expiresAt, block.timestamp);
        bytes32 id = consentId(patient, scope);
        _consents[id] = Consent({
            kinds: kinds, expiresAt: expiresAt, grantedAtBlock: uint64(block.number), revokedAtBlock: 0
        });
        emit ConsentGranted(patient, id, scope.hospital, scope.purpose, scope.disease, scope.studyId, kinds, expiresAt);
    }

    function _revoke(address patient, Scope calldata scope) private {
        bytes32 id = consentId(patient, scope);
        Consent storage c = _consents[id];
        if (c.grantedAtBlock == 0) revert ConsentRegistryNotGranted(patient, id);
        if (c.revokedAtBlock != 0) revert ConsentRegistryConsentRevoked(patient, id, c.revokedAtBlock);
        c.revokedAtBlock = uint64(block.number);
        emit ConsentRevoked(patient, id);
    }

    function _checkSigner(address patient, bytes32 structHash, uint8 v, bytes32 r, bytes32 s) private view {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), v, r, s);
        if (err != ECDSA.RecoverError.NoError) revert ConsentRegistryInvalidSignature(patient);
        if (signer != patient) revert ConsentRegistryInvalidSigner(signer, patient);
    }

    function _checkUse(Use calldata use) private pure {
        if (!DataUse.validKinds(use.kinds)) revert ConsentRegistryInvalidKinds(use.kinds);
        if (!DataUse.validPurpose(use.purpose, use.disease)) {
            revert ConsentRegistryInvalidPurpose(use.purpose, use.disease);
        }
    }

    function _permits(address patient, Use calldata use) private view returns (bool) {
        bytes32[12] memory ids;
        uint256 n = _candidates(patient, use, ids);
        for (uint256 i = 0; i < n; ++i) {
            if (_inForce(_consents[ids[i]], use.kinds)) return true;
        }
        return false;
    }

    function _inForce(Consent memory c, uint8 kinds) private view returns (bool) {
        return c.grantedAtBlock != 0 && c.revokedAtBlock == 0 && c.expiresAt > block.timestamp
            && (c.kinds & kinds) == kinds;
    }

    /// @dev Every consent id that could permit `use`, most specific first: the use's own
    /// purpose, then the broader DUO purposes that cover it; for each, the named hospital then
    /// any hospital; for each, the named study then any study.
    function _candidates(address patient, Use calldata use, bytes32[12] memory ids)
        private
        pure
        returns (uint256 n)
    {
        uint8[3] memory purposes;
        uint32[3] memory diseases;
        uint256 np = 1;
        purposes[0] = use.purpose;
        diseases[0] = use.disease;
        if (use.purpose == DataUse.PURPOSE_DS) {
            purposes[np++] = DataUse.PURPOSE_HMB;
        }
        if (use.purpose != DataUse.PURPOSE_GRU) {
            purposes[np++] = DataUse.PURPOSE_GRU;
        }
        for (uint256 p = 0; p < np; ++p) {
            for (uint256 h = 0; h < 2; ++h) {
                address hospital = h == 0 ? use.hospital : address(0);
                if (h == 1 && use.hospital == address(0)) break;
                ids[n++] = _id(patient, hospital, purposes[p], diseases[p], use.studyId);
                if (use.studyId != 0) ids[n++] = _id(patient, hospital, purposes[p], diseases[p], 0);
            }
        }
    }

    function _id(address patient, address hospital, uint8 purpose, uint32 disease, uint256 studyId)
        private
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(patient, hospital, purpose, disease, studyId));
    }
}
