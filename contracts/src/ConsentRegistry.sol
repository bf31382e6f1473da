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
 * with OpenZeppelin's `InvalidAccountNonce(account, currentNonce)`. A relayer may send many
 * signatures in one transaction ({grantBySigBatch}, {revokeBySigBatch}); each is attempted on its
 * own, so one patient's bad signature does not hold up the others. A patient kills signatures
 * they made but no longer want relayed with {cancelSignatures}.
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

    /// @notice The arguments of one {grantBySig} call, as a batch item of {grantBySigBatch}.
    struct GrantBySig {
        address patient;
        Scope scope;
        uint8 kinds;
        uint64 expiresAt;
        uint256 nonce;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// @notice The arguments of one {revokeBySig} call, as a batch item of {revokeBySigBatch}.
    struct RevokeBySig {
        address patient;
        Scope scope;
        uint256 nonce;
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /**
     * @notice The most signatures one {grantBySigBatch} or {revokeBySigBatch} call relays.
     * @dev A relayed grant of a patient's first signature, the costliest item there is, costs
     * about 61,000 gas inside a batch, so a full batch stays near 12.2M gas: 40 % of a 30M block.
     */
    uint256 public constant MAX_RELAY_BATCH = 200;

    /**
     * @notice The most nonces one {cancelSignatures} call consumes.
     * @dev Each costs about 350 gas (a warm storage write); 256 take about 118,000 gas in all.
     */
    uint256 public constant MAX_CANCEL = 256;

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

    /// @notice `patient` consumed their nonces `fromNonce` to `toNonce - 1`: no signature they made
    /// with one of them can be relayed any more. `toNonce` is their current nonce now.
    event SignaturesCancelled(address indexed patient, uint256 fromNonce, uint256 toNonce);

    /// @notice Item `index` of a batch relay, `patient`'s signature with `nonce`, was refused with
    /// the custom error whose ABI-encoded revert data is `reason`; nothing of it took effect.
    event ConsentRelayFailed(address indexed patient, uint256 nonce, uint256 index, bytes reason);

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
    /// @notice `upTo` is not above `patient`'s current nonce `currentNonce`: nothing to cancel.
    error ConsentRegistryNothingToCancel(address patient, uint256 upTo, uint256 currentNonce);
    /// @notice Cancelling nonces `currentNonce` to `upTo - 1` exceeds `maxCount` per call.
    error ConsentRegistryTooManyToCancel(uint256 currentNonce, uint256 upTo, uint256 maxCount);
    /// @notice A batch of `size` signatures exceeds the maximum `maxSize` per call.
    error ConsentRegistryBatchTooLarge(uint256 size, uint256 maxSize);
    /// @notice Item `index` of a batch ran out of gas: the transaction's gas limit is too low for
    /// the batch, which is refused whole rather than report the item as refused.
    error ConsentRegistryBatchOutOfGas(uint256 index);

    /**
     * @notice Deploy the registry under the EIP-712 signing domain "MeTAI ConsentRegistry",
     * version "1", bound to this chain and this contract's address.
     * @dev Emits no event. The signing domain never changes after deployment, so the inherited
     * {EIP712DomainChanged} event is never emitted by this contract.
     */
    constructor() EIP712("MeTAI ConsentRegistry", "1") {}

    // ---------------------------------------------------------------- grant / revoke

    /**
     * @notice Grant consent from the patient's own address. Anyone may call; the caller is the
     * patient, so a caller can only ever grant their own consent.
     * @dev Granting again under the same scope overwrites the stored kinds and expiry, records the
     * current block as the grant block and clears any earlier revocation, so a revoked consent is
     * put back in force.
     *
     * Emits a {ConsentGranted} event.
     *
     * Reverts with {ConsentRegistryInvalidKinds} if `kinds` is empty or has bits outside the
     * defined data kinds.
     * Reverts with {ConsentRegistryInvalidPurpose} if (`scope.purpose`, `scope.disease`) is not a
     * defined purpose code (a disease code is required with DS and forbidden with GRU and HMB).
     * Reverts with {ConsentRegistryExpiryInPast} if `expiresAt` is not after the current block's
     * timestamp.
     *
     * @param scope Hospital, purpose and study the consent applies to.
     * @param kinds Bit set of data kinds covered.
     * @param expiresAt Unix time (seconds) at which the consent lapses.
     */
    function grant(Scope calldata scope, uint8 kinds, uint64 expiresAt) external {
        _grant(msg.sender, scope, kinds, expiresAt);
    }

    /**
     * @notice Grant consent on behalf of `patient`, who signed the EIP-712 `ConsentGrant`.
     * Anyone may relay the signature (in practice the coordinator does).
     * @dev Anyone may relay. Reverts on a passed deadline, a bad or foreign signature and a
     * nonce that is not the patient's current one (replay). The checks run in the order listed
     * below; on success the patient's nonce is consumed and the consent is stored exactly as by
     * {grant}.
     *
     * Emits a {ConsentGranted} event.
     *
     * Reverts with {ConsentRegistryExpiredSignature} if the current block's timestamp is after
     * `deadline` (a signature relayed at exactly `deadline` is still accepted).
     * Reverts with {ConsentRegistryInvalidSignature} if no signer can be recovered: `s` lies in
     * the upper half of the curve order (a malleable signature), or `ecrecover` yields the zero
     * address (for example for a `v` other than 27 or 28).
     * Reverts with {ConsentRegistryInvalidSigner} if the recovered signer is not `patient`, as
     * for a signature by someone else or, almost always, over different terms.
     * Reverts with {InvalidAccountNonce} if `nonce` is not `patient`'s current nonce (a replay or
     * an out-of-order signature).
     * Reverts with {ConsentRegistryInvalidKinds}, {ConsentRegistryInvalidPurpose} or
     * {ConsentRegistryExpiryInPast} on the same conditions as {grant}.
     *
     * @param patient The patient who signed, and whose consent is granted.
     * @param scope Hospital, purpose and study the consent applies to.
     * @param kinds Bit set of data kinds covered.
     * @param expiresAt Unix time (seconds) at which the consent lapses.
     * @param nonce The patient's current nonce (see {nonces}), consumed by this call.
     * @param deadline Last unix time (seconds, inclusive) at which the signature may be relayed.
     * @param v Recovery id of the patient's signature.
     * @param r First 32 bytes of the patient's signature.
     * @param s Second 32 bytes of the patient's signature.
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
     * @notice Revoke the caller's consent under `scope`, effective from this block, and consume
     * the caller's current nonce. Anyone may call; the caller is the patient, so a caller can only
     * ever revoke their own consent.
     * @dev The consent stays stored with its revocation block, so {explain} can say why it no
     * longer permits a use; an expired consent can still be revoked. Granting again under the
     * same scope puts it back in force.
     *
     * Consuming the nonce kills a signed grant or revocation made with it that was not relayed
     * yet, so a grant the patient signed before revoking cannot be relayed after it. It kills
     * that one nonce only: a signature with the next nonce becomes the one a relayer can send
     * (nonces are used in order). A patient with several signatures outstanding must call
     * {cancelSignatures} with a bound above all of them; the portal offers that, not this alone.
     *
     * Emits a {ConsentRevoked} event, then a {SignaturesCancelled} event for the one nonce.
     *
     * Reverts with {ConsentRegistryNotGranted} if the caller never granted consent under `scope`.
     * Reverts with {ConsentRegistryConsentRevoked} if that consent is already revoked.
     *
     * @param scope The scope the consent was granted under.
     */
    function revoke(Scope calldata scope) external {
        _revoke(msg.sender, scope);
        uint256 current = nonces(msg.sender);
        _cancel(msg.sender, current, current + 1);
    }

    /**
     * @notice Consume every one of the caller's nonces below `upTo`, so that no signature they
     * made with such a nonce can be relayed. Anyone may call; the caller is the patient, so a
     * caller can only ever cancel their own signatures.
     * @dev Nothing else changes: consents granted or revoked stay as they are. Pass one more than
     * the highest nonce signed with to kill every outstanding signature; a signature made later
     * must use the new current nonce, `upTo` (see {nonces}).
     *
     * Emits a {SignaturesCancelled} event.
     *
     * Reverts with {ConsentRegistryNothingToCancel} if `upTo` is not above the caller's current
     * nonce.
     * Reverts with {ConsentRegistryTooManyToCancel} if that would consume more than
     * {MAX_CANCEL} nonces; cancel in several calls then.
     *
     * @param upTo The first nonce left usable; every nonce from the current one up to `upTo - 1`
     * is consumed.
     */
    function cancelSignatures(uint256 upTo) external {
        uint256 current = nonces(msg.sender);
        if (upTo <= current) revert ConsentRegistryNothingToCancel(msg.sender, upTo, current);
        if (upTo - current > MAX_CANCEL) revert ConsentRegistryTooManyToCancel(current, upTo, MAX_CANCEL);
        _cancel(msg.sender, current, upTo);
    }

    /**
     * @notice Revoke consent on behalf of `patient`, who signed the EIP-712 `ConsentRevoke`.
     * Anyone may relay the signature (in practice the coordinator does).
     * @dev Anyone may relay; same checks as {grantBySig}. The checks run in the order listed
     * below; on success the patient's nonce is consumed and the consent is revoked exactly as by
     * {revoke}.
     *
     * Emits a {ConsentRevoked} event.
     *
     * Reverts with {ConsentRegistryExpiredSignature} if the current block's timestamp is after
     * `deadline`.
     * Reverts with {ConsentRegistryInvalidSignature} if no signer can be recovered (malleable
     * upper-half `s`, or `ecrecover` yields the zero address).
     * Reverts with {ConsentRegistryInvalidSigner} if the recovered signer is not `patient`.
     * Reverts with {InvalidAccountNonce} if `nonce` is not `patient`'s current nonce.
     * Reverts with {ConsentRegistryNotGranted} if `patient` never granted consent under `scope`.
     * Reverts with {ConsentRegistryConsentRevoked} if that consent is already revoked.
     *
     * @param patient The patient who signed, and whose consent is revoked.
     * @param scope The scope the consent was granted under.
     * @param nonce The patient's current nonce (see {nonces}), consumed by this call.
     * @param deadline Last unix time (seconds, inclusive) at which the signature may be relayed.
     * @param v Recovery id of the patient's signature.
     * @param r First 32 bytes of the patient's signature.
     * @param s Second 32 bytes of the patient's signature.
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

    // ---------------------------------------------------------------- batch relay

    /**
     * @notice Relay many signed grants in one transaction; each is attempted on its own. Anyone
     * may relay (in practice the coordinator does).
     * @dev Each item is sent to {grantBySig} by an external call of this contract to itself, so it
     * passes exactly the checks of a single relayed grant and a refused item is undone alone: the
     * others still go through, and the batch returns normally. A refused item changes nothing
     * (its patient's nonce stays unused, so a corrected signature or a later relay can still
     * use it).
     *
     * Emits a {ConsentGranted} event for each item granted and a {ConsentRelayFailed} event, with
     * the item's revert data, for each item refused, in item order.
     *
     * Reverts with {ConsentRegistryBatchTooLarge} if `items` holds more than {MAX_RELAY_BATCH}.
     * Reverts with {ConsentRegistryBatchOutOfGas} if an item ran out of gas (the transaction's
     * gas limit is too low), so that a relayer's gas limit never makes an item look refused.
     * An empty batch does nothing and returns an empty array.
     *
     * @param items The signed grants, each with {grantBySig}'s arguments.
     * @return ok For each item, whether it was granted.
     */
    function grantBySigBatch(GrantBySig[] calldata items) external returns (bool[] memory ok) {
        if (items.length > MAX_RELAY_BATCH) revert ConsentRegistryBatchTooLarge(items.length, MAX_RELAY_BATCH);
        ok = new bool[](items.length);
        for (uint256 i = 0; i < items.length; ++i) {
            GrantBySig calldata g = items[i];
            try this.grantBySig(g.patient, g.scope, g.kinds, g.expiresAt, g.nonce, g.deadline, g.v, g.r, g.s) {
                ok[i] = true;
            } catch (bytes memory reason) {
                _relayFailed(g.patient, g.nonce, i, reason);
            }
        }
    }

    /**
     * @notice Relay many signed revocations in one transaction; each is attempted on its own.
     * Anyone may relay (in practice the coordinator does).
     * @dev As {grantBySigBatch}, each item through {revokeBySig}.
     *
     * Emits a {ConsentRevoked} event for each item revoked and a {ConsentRelayFailed} event, with
     * the item's revert data, for each item refused, in item order.
     *
     * Reverts with {ConsentRegistryBatchTooLarge} if `items` holds more than {MAX_RELAY_BATCH}.
     * Reverts with {ConsentRegistryBatchOutOfGas} if an item ran out of gas.
     * An empty batch does nothing and returns an empty array.
     *
     * @param items The signed revocations, each with {revokeBySig}'s arguments.
     * @return ok For each item, whether it was revoked.
     */
    function revokeBySigBatch(RevokeBySig[] calldata items) external returns (bool[] memory ok) {
        if (items.length > MAX_RELAY_BATCH) revert ConsentRegistryBatchTooLarge(items.length, MAX_RELAY_BATCH);
        ok = new bool[](items.length);
        for (uint256 i = 0; i < items.length; ++i) {
            RevokeBySig calldata g = items[i];
            try this.revokeBySig(g.patient, g.scope, g.nonce, g.deadline, g.v, g.r, g.s) {
                ok[i] = true;
            } catch (bytes memory reason) {
                _relayFailed(g.patient, g.nonce, i, reason);
            }
        }
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
        if (_permits(patient, use)) return;
        for (uint256 i = 0; i < _CANDIDATES; ++i) {
            (bool valid, bytes32 id) = _candidate(patient, use, i);
            if (!valid) continue;
            Consent storage c = _consents[id];
            if (c.grantedAtBlock == 0) continue;
            if (c.revokedAtBlock != 0) revert ConsentRegistryConsentRevoked(patient, id, c.revokedAtBlock);
            if (c.expiresAt <= block.timestamp) revert ConsentRegistryConsentExpired(patient, id, c.expiresAt);
            revert ConsentRegistryKindsNotCovered(patient, id, c.kinds, use.kinds);
        }
        revert ConsentRegistryNoMatchingConsent(patient);
    }

    // ---------------------------------------------------------------- internals

    /// @dev Validates and stores `patient`'s consent under `scope`, then emits {ConsentGranted}.
    /// Reverts with {ConsentRegistryInvalidKinds}, {ConsentRegistryInvalidPurpose} or
    /// {ConsentRegistryExpiryInPast}; performs no caller check (its callers establish `patient`).
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

    /// @dev Marks `patient`'s consent under `scope` revoked in this block, then emits
    /// {ConsentRevoked}. Reverts with {ConsentRegistryNotGranted} or
    /// {ConsentRegistryConsentRevoked}; performs no caller check (its callers establish `patient`).
    function _revoke(address patient, Scope calldata scope) private {
        bytes32 id = consentId(patient, scope);
        Consent storage c = _consents[id];
        if (c.grantedAtBlock == 0) revert ConsentRegistryNotGranted(patient, id);
        if (c.revokedAtBlock != 0) revert ConsentRegistryConsentRevoked(patient, id, c.revokedAtBlock);
        c.revokedAtBlock = uint64(block.number);
        emit ConsentRevoked(patient, id);
    }

    /// @dev Consumes `patient`'s nonces `from` (their current one) to `upTo - 1`, then emits
    /// {SignaturesCancelled}. Through OpenZeppelin's {_useNonce}, whose nonces only ever count up.
    function _cancel(address patient, uint256 from, uint256 upTo) private {
        for (uint256 n = from; n < upTo; ++n) {
            _useNonce(patient);
        }
        emit SignaturesCancelled(patient, from, upTo);
    }

    /// @dev Reports batch item `index` as refused with `reason`. Every refusal of a relayed call
    /// carries a custom error's data; empty data means the item ran out of gas, which is the
    /// relayer's gas limit and not the item's fault, so the whole batch reverts instead (and
    /// eth_estimateGas, which looks for the lowest limit that does not revert, finds one at which
    /// no item runs out of gas).
    function _relayFailed(address patient, uint256 nonce, uint256 index, bytes memory reason) private {
        if (reason.length == 0) revert ConsentRegistryBatchOutOfGas(index);
        emit ConsentRelayFailed(patient, nonce, index, reason);
    }

    /// @dev Reverts with {ConsentRegistryInvalidSignature} if (`v`, `r`, `s`) recovers no signer
    /// for the EIP-712 digest of `structHash`, or with {ConsentRegistryInvalidSigner} if it
    /// recovers someone other than `patient`. OpenZeppelin's own ECDSA errors are never raised.
    function _checkSigner(address patient, bytes32 structHash, uint8 v, bytes32 r, bytes32 s) private view {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), v, r, s);
        if (err != ECDSA.RecoverError.NoError) revert ConsentRegistryInvalidSignature(patient);
        if (signer != patient) revert ConsentRegistryInvalidSigner(signer, patient);
    }

    /// @dev Reverts with {ConsentRegistryInvalidKinds} or {ConsentRegistryInvalidPurpose} if `use`
    /// is malformed; used by the views only.
    function _checkUse(Use calldata use) private pure {
        if (!DataUse.validKinds(use.kinds)) revert ConsentRegistryInvalidKinds(use.kinds);
        if (!DataUse.validPurpose(use.purpose, use.disease)) {
            revert ConsentRegistryInvalidPurpose(use.purpose, use.disease);
        }
    }

    /// @dev Up to 3 purposes (the use's own, then the broader DUO purposes covering it) x 2
    /// hospitals (the named one, then any) x 2 studies (the named one, then any).
    uint256 private constant _CANDIDATES = 12;

    /// @dev Allocates no memory, so a batch over thousands of patients costs no memory growth.
    function _permits(address patient, Use calldata use) private view returns (bool) {
        for (uint256 i = 0; i < _CANDIDATES; ++i) {
            (bool valid, bytes32 id) = _candidate(patient, use, i);
            if (valid && _inForce(_consents[id], use.kinds)) return true;
        }
        return false;
    }

    function _inForce(Consent storage c, uint8 kinds) private view returns (bool) {
        return c.grantedAtBlock != 0 && c.revokedAtBlock == 0 && c.expiresAt > block.timestamp
            && (c.kinds & kinds) == kinds;
    }

    /// @dev The `i`-th consent id that could permit `use`, most specific first; `valid` is false
    /// where that combination does not exist (no broader purpose, or no distinct hospital/study).
    function _candidate(address patient, Use calldata use, uint256 i) private pure returns (bool valid, bytes32 id) {
        uint8 purpose = use.purpose;
        uint32 disease = use.disease;
        for (uint256 level = i / 4; level > 0; --level) {
            if (purpose == DataUse.PURPOSE_DS) {
                (purpose, disease) = (DataUse.PURPOSE_HMB, 0);
            } else if (purpose == DataUse.PURPOSE_HMB) {
                purpose = DataUse.PURPOSE_GRU;
            } else {
                return (false, 0);
            }
        }
        bool anyHospital = (i / 2) % 2 == 1;
        bool anyStudy = i % 2 == 1;
        if ((anyHospital && use.hospital == address(0)) || (anyStudy && use.studyId == 0)) return (false, 0);
        return (
            true,
            _id(patient, anyHospital ? address(0) : use.hospital, purpose, disease, anyStudy ? 0 : use.studyId)
        );
    }

    /// @dev keccak256(abi.encode(...)) computed in scratch memory past the free pointer, which
    /// is not advanced: identical to abi.encode's result without allocating.
    function _id(address patient, address hospital, uint8 purpose, uint32 disease, uint256 studyId)
        private
        pure
        returns (bytes32 id)
    {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, and(patient, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x20), and(hospital, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x40), and(purpose, 0xff))
            mstore(add(ptr, 0x60), and(disease, 0xffffffff))
            mstore(add(ptr, 0x80), studyId)
            id := keccak256(ptr, 0xa0)
        }
    }
}
