// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {DataUse} from "./DataUse.sol";
import {RoleGated} from "./RoleGated.sol";
import {Roles} from "./Roles.sol";

/**
 * @title StudyRegistry
 * @notice The life of a federated training study: a researcher requests it; each named
 * hospital approves or declines; the coordinator starts it once every hospital approved; each
 * round, each hospital commits to the cohort it trained on and the update it sent; the
 * coordinator records the aggregated model of the round; completion records the final model.
 * @dev Per-round contributions store the cohort root and count; the update hash is emitted
 * with them. Privacy budgets are in milli-epsilon (1000 = epsilon 1.0); a budget of 0 means
 * the study uses no differential privacy, and then every round must spend 0.
 */
contract StudyRegistry is RoleGated {
    /// @notice Where a study is in its life.
    enum Status {
        None,
        Requested,
        Declined,
        Running,
        Completed
    }

    /// @notice A named hospital's decision on a study.
    enum Decision {
        None, // not named in the study
        Pending,
        Approved,
        Declined
    }

    /// @notice What a researcher asks for.
    struct StudyRequest {
        uint8 purpose;
        uint32 disease;
        uint8 kinds;
        address[] hospitals;
        bytes32 taskCodeHash;
        uint16 rounds;
        uint64 privacyBudget;
    }

    /// @notice A study as stored.
    struct Study {
        address researcher;
        Status status;
        uint8 purpose;
        uint8 kinds;
        uint32 disease;
        uint16 rounds;
        uint16 roundsCompleted;
        uint16 approvals;
        bytes32 taskCodeHash;
        uint64 privacyBudget;
        uint64 privacySpent;
        uint64 requestedAtBlock;
        uint64 startedAtBlock;
        bytes32 finalModelHash;
    }

    /// @notice A hospital's commitment for one round.
    struct Contribution {
        bytes32 cohortRoot;
        uint64 cohortCount;
        uint64 atBlock;
    }

    uint256 private _nextId = 1; // starts non-zero so no request pays for a fresh slot
    mapping(uint256 studyId => Study) private _studies;
    mapping(uint256 studyId => address[]) private _hospitals;
    mapping(uint256 studyId => mapping(address hospital => Decision)) private _decisions;
    mapping(bytes32 key => Contribution) private _contributions;
    mapping(uint256 studyId => mapping(uint256 round => bytes32 modelHash)) private _roundModels;

    /// @notice `researcher` requested study `studyId`.
    event StudyRequested(
        uint256 indexed studyId,
        address indexed researcher,
        uint8 purpose,
        uint32 disease,
        uint8 kinds,
        address[] hospitals,
        bytes32 taskCodeHash,
        uint16 rounds,
        uint64 privacyBudget
    );
    /// @notice `hospital` approved study `studyId`.
    event StudyApproved(uint256 indexed studyId, address indexed hospital);
    /// @notice `hospital` declined study `studyId`; it can no longer start.
    event StudyDeclined(uint256 indexed studyId, address indexed hospital);
    /// @notice `coordinator` started study `studyId`.
    event StudyStarted(uint256 indexed studyId, address indexed coordinator);
    /// @notice `hospital` trained round `round` of `studyId` on the committed cohort.
    event ContributionRecorded(
        uint256 indexed studyId,
        uint16 indexed round,
        address indexed hospital,
        bytes32 cohortRoot,
        uint64 cohortCount,
        bytes32 updateHash
    );
    /// @notice Round `round` of `studyId` was aggregated into `modelHash` from `contributors`.
    event RoundRecorded(
        uint256 indexed studyId, uint16 indexed round, bytes32 modelHash, address[] contributors, uint64 privacySpent
    );
    /// @notice Study `studyId` completed after `rounds` rounds with final model `finalModelHash`.
    event StudyCompleted(uint256 indexed studyId, bytes32 finalModelHash, uint16 rounds);

    /// @notice (`purpose`, `disease`) is not a defined purpose code.
    error StudyRegistryInvalidPurpose(uint8 purpose, uint32 disease);
    /// @notice `kinds` is empty or has bits outside the defined data kinds.
    error StudyRegistryInvalidKinds(uint8 kinds);
    /// @notice A study needs at least one hospital.
    error StudyRegistryNoHospitals();
    /// @notice `hospital` does not hold the hospital role.
    error StudyRegistryNotAHospital(address hospital);
    /// @notice `hospital` is named twice.
    error StudyRegistryDuplicateHospital(address hospital);
    /// @notice The task code hash is zero.
    error StudyRegistryZeroTaskCodeHash();
    /// @notice A study needs at least one round; `rounds` was given.
    error StudyRegistryInvalidRounds(uint16 rounds);
    /// @notice Study `studyId` does not exist.
    error StudyRegistryUnknownStudy(uint256 studyId);
    /// @notice Study `studyId` is `status`; the call needs `expected`.
    error StudyRegistryUnexpectedStatus(uint256 studyId, Status status, Status expected);
    /// @notice `hospital` is not named in study `studyId`.
    error StudyRegistryNotInvited(uint256 studyId, address hospital);
    /// @notice `hospital` already decided `decision` on study `studyId`.
    error StudyRegistryAlreadyDecided(uint256 studyId, address hospital, Decision decision);
    /// @notice Study `studyId` has `approvals` of the `required` approvals.
    error StudyRegistryNotApproved(uint256 studyId, uint16 approvals, uint16 required);
    /// @notice `hospital` is not an approving participant of study `studyId` (its decision).
    error StudyRegistryNotParticipant(uint256 studyId, address hospital, Decision decision);
    /// @notice Round `round` of study `studyId` is not open; the open round is `expected`.
    error StudyRegistryWrongRound(uint256 studyId, uint16 round, uint16 expected);
    /// @notice `hospital` already contributed to round `round` of study `studyId`.
    error StudyRegistryAlreadyContributed(uint256 studyId, uint16 round, address hospital);
    /// @notice A cohort needs a non-zero root and at least one record.
    error StudyRegistryInvalidCohort(bytes32 cohortRoot, uint64 cohortCount);
    /// @notice A hash argument that must be non-zero was zero.
    error StudyRegistryZeroHash();
    /// @notice A round needs at least one contributor.
    error StudyRegistryNoContributors();
    /// @notice Contributors must be given in strictly increasing address order; `hospital` is not.
    error StudyRegistryUnsortedContributors(address hospital);
    /// @notice `hospital` has no contribution to round `round` of study `studyId`.
    error StudyRegistryMissingContribution(uint256 studyId, uint16 round, address hospital);
    /// @notice Spending `requested` more would exceed study `studyId`'s budget (`spent` of `budget`).
    error StudyRegistryPrivacyBudgetExceeded(uint256 studyId, uint64 spent, uint64 requested, uint64 budget);

    /**
     * @notice Deploy the registry, gated by the roles held in `roles_`.
     * @dev Emits no event. Reverts with {RoleGatedZeroRegistry} if `roles_` is the zero address.
     * @param roles_ The consortium role registry.
     */
    constructor(IAccessControl roles_) RoleGated(roles_) {}

    // ---------------------------------------------------------------- researcher

    /**
     * @notice Request a study; every named hospital must approve it before it can start. Only an
     * account holding the researcher role may call; the caller is recorded as the researcher.
     * @dev Every named hospital must hold the hospital role at the time of the request; each
     * starts with a pending decision. The privacy budget is not checked (0 means no differential
     * privacy).
     *
     * Emits a {StudyRequested} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the researcher
     * role in the {roles} registry.
     * Reverts with {StudyRegistryInvalidPurpose} if (`req.purpose`, `req.disease`) is not a
     * defined purpose code.
     * Reverts with {StudyRegistryInvalidKinds} if `req.kinds` is empty or has bits outside the
     * defined data kinds.
     * Reverts with {StudyRegistryNoHospitals} if `req.hospitals` is empty.
     * Reverts with {StudyRegistryZeroTaskCodeHash} if `req.taskCodeHash` is zero.
     * Reverts with {StudyRegistryInvalidRounds} if `req.rounds` is zero.
     * Reverts with {StudyRegistryNotAHospital} if a named hospital does not hold the hospital role.
     * Reverts with {StudyRegistryDuplicateHospital} if a hospital is named more than once.
     *
     * @param req Purpose and disease code, data kinds, the hospitals asked to take part, the hash
     * of the training task's code, the number of rounds and the privacy budget (milli-epsilon).
     * @return studyId The new study's id (starting at 1).
     */
    function request(StudyRequest calldata req) external onlyRole(Roles.RESEARCHER) returns (uint256 studyId) {
        if (!DataUse.validPurpose(req.purpose, req.disease)) {
            revert StudyRegistryInvalidPurpose(req.purpose, req.disease);
        }
        if (!DataUse.validKinds(req.kinds)) revert StudyRegistryInvalidKinds(req.kinds);
        if (req.hospitals.length == 0) revert StudyRegistryNoHospitals();
        if (req.taskCodeHash == bytes32(0)) revert StudyRegistryZeroTaskCodeHash();
        if (req.rounds == 0) revert StudyRegistryInvalidRounds(req.rounds);

        studyId = _nextId++;
        for (uint256 i = 0; i < req.hospitals.length; ++i) {
            address h = req.hospitals[i];
            if (!roles.hasRole(Roles.HOSPITAL, h)) revert StudyRegistryNotAHospital(h);
            if (_decisions[studyId][h] != Decision.None) revert StudyRegistryDuplicateHospital(h);
            _decisions[studyId][h] = Decision.Pending;
        }
        _hospitals[studyId] = req.hospitals;
        Study storage s = _studies[studyId];
        s.researcher = msg.sender;
        s.status = Status.Requested;
        s.purpose = req.purpose;
        s.kinds = req.kinds;
        s.disease = req.disease;
        s.rounds = req.rounds;
        s.taskCodeHash = req.taskCodeHash;
        s.privacyBudget = req.privacyBudget;
        s.requestedAtBlock = uint64(block.number);
        emit StudyRequested(
            studyId,
            msg.sender,
            req.purpose,
            req.disease,
            req.kinds,
            req.hospitals,
            req.taskCodeHash,
            req.rounds,
            req.privacyBudget
        );
    }

    // ---------------------------------------------------------------- hospitals

    /**
     * @notice Approve study `studyId` on behalf of the calling hospital's data committee. Only a
     * hospital named in the study, still holding the hospital role, may call, and only once.
     * @dev Approving does not start the study: the coordinator does, with {start}, once every
     * named hospital approved.
     *
     * Emits a {StudyApproved} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the hospital
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Requested` (for example
     * because another hospital already declined it, or it already started).
     * Reverts with {StudyRegistryNotInvited} if the caller is not named in the study.
     * Reverts with {StudyRegistryAlreadyDecided} if the caller already approved or declined it.
     *
     * @param studyId The study to approve.
     */
    function approve(uint256 studyId) external onlyRole(Roles.HOSPITAL) {
        Study storage s = _pendingDecision(studyId);
        _decisions[studyId][msg.sender] = Decision.Approved;
        s.approvals += 1;
        emit StudyApproved(studyId, msg.sender);
    }

    /**
     * @notice Decline study `studyId`; a declined study can never start. Only a hospital named in
     * the study, still holding the hospital role, may call, and only before it decided.
     * @dev One decline is final: the study's status becomes `Declined`, and every later
     * {approve}, {decline} or {start} on it reverts with {StudyRegistryUnexpectedStatus}.
     *
     * Emits a {StudyDeclined} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the hospital
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Requested`.
     * Reverts with {StudyRegistryNotInvited} if the caller is not named in the study.
     * Reverts with {StudyRegistryAlreadyDecided} if the caller already approved or declined it.
     *
     * @param studyId The study to decline.
     */
    function decline(uint256 studyId) external onlyRole(Roles.HOSPITAL) {
        Study storage s = _pendingDecision(studyId);
        _decisions[studyId][msg.sender] = Decision.Declined;
        s.status = Status.Declined;
        emit StudyDeclined(studyId, msg.sender);
    }

    /**
     * @notice Commit the calling hospital's contribution to the open round of `studyId`.
     * Only a hospital that approved the study and still holds the hospital role may call, once
     * per round.
     * @dev The caller must still hold the hospital role: a hospital the consortium removed
     * after it approved the study can no longer add rounds to it. Only the cohort root and count
     * are stored; the update hash is only emitted.
     *
     * Emits a {ContributionRecorded} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the hospital
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Running`.
     * Reverts with {StudyRegistryNotParticipant} if the caller did not approve the study
     * (including a hospital the study does not name).
     * Reverts with {StudyRegistryWrongRound} if `round` is not the open round (one past the
     * rounds recorded so far) or is past the study's last round.
     * Reverts with {StudyRegistryInvalidCohort} if `cohortRoot` is zero or `cohortCount` is zero.
     * Reverts with {StudyRegistryZeroHash} if `updateHash` is zero.
     * Reverts with {StudyRegistryAlreadyContributed} if the caller already contributed to `round`.
     *
     * @param studyId The running study contributed to.
     * @param round The open round (rounds count from 1).
     * @param cohortRoot Merkle root over the leaves of the records trained on.
     * @param cohortCount Number of records trained on.
     * @param updateHash Hash of the model update sent to the coordinator.
     */
    function contribute(uint256 studyId, uint16 round, bytes32 cohortRoot, uint64 cohortCount, bytes32 updateHash)
        external
        onlyRole(Roles.HOSPITAL)
    {
        Study storage s = _existing(studyId);
        if (s.status != Status.Running) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Running);
        Decision d = _decisions[studyId][msg.sender];
        if (d != Decision.Approved) revert StudyRegistryNotParticipant(studyId, msg.sender, d);
        uint16 open = s.roundsCompleted + 1;
        if (round != open || round > s.rounds) revert StudyRegistryWrongRound(studyId, round, open);
        if (cohortRoot == bytes32(0) || cohortCount == 0) revert StudyRegistryInvalidCohort(cohortRoot, cohortCount);
        if (updateHash == bytes32(0)) revert StudyRegistryZeroHash();
        Contribution storage c = _contributions[_key(studyId, round, msg.sender)];
        if (c.cohortCount != 0) revert StudyRegistryAlreadyContributed(studyId, round, msg.sender);
        c.cohortRoot = cohortRoot;
        c.cohortCount = cohortCount;
        c.atBlock = uint64(block.number);
        emit ContributionRecorded(studyId, round, msg.sender, cohortRoot, cohortCount, updateHash);
    }

    // ---------------------------------------------------------------- coordinator

    /**
     * @notice Start study `studyId` once every named hospital approved it. Only an account
     * holding the coordinator role may call.
     *
     * @dev Emits a {StudyStarted} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the coordinator
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Requested` (it was
     * declined, or already started or completed).
     * Reverts with {StudyRegistryNotApproved} if not every named hospital approved it yet.
     *
     * @param studyId The study to start.
     */
    function start(uint256 studyId) external onlyRole(Roles.COORDINATOR) {
        Study storage s = _existing(studyId);
        if (s.status != Status.Requested) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Requested);
        uint16 required = uint16(_hospitals[studyId].length);
        if (s.approvals != required) revert StudyRegistryNotApproved(studyId, s.approvals, required);
        s.status = Status.Running;
        s.startedAtBlock = uint64(block.number);
        emit StudyStarted(studyId, msg.sender);
    }

    /**
     * @notice Record the aggregation of the open round of `studyId`. Only an account holding the
     * coordinator role may call.
     * @dev Every listed contributor must have contributed to this round; hospitals that
     * contributed but are not listed are simply left out. Recording a round closes it and opens
     * the next one, if any.
     *
     * Emits a {RoundRecorded} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the coordinator
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Running`.
     * Reverts with {StudyRegistryWrongRound} if `round` is not the open round or is past the
     * study's last round.
     * Reverts with {StudyRegistryZeroHash} if `modelHash` is zero.
     * Reverts with {StudyRegistryNoContributors} if `contributors` is empty.
     * Reverts with {StudyRegistryUnsortedContributors} if `contributors` is not in strictly
     * increasing address order (so also on a repeated address or the zero address).
     * Reverts with {StudyRegistryMissingContribution} if a listed hospital did not contribute to
     * `round`.
     * Reverts with {StudyRegistryPrivacyBudgetExceeded} if `privacySpent` would take the study's
     * total spending over its privacy budget.
     *
     * @param studyId The running study.
     * @param round The open round (rounds count from 1).
     * @param modelHash Hash of the aggregated model.
     * @param contributors Hospitals whose contributions were aggregated, in increasing order.
     * @param privacySpent Milli-epsilon spent by this round.
     */
    function recordRound(
        uint256 studyId,
        uint16 round,
        bytes32 modelHash,
        address[] calldata contributors,
        uint64 privacySpent
    ) external onlyRole(Roles.COORDINATOR) {
        Study storage s = _existing(studyId);
        if (s.status != Status.Running) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Running);
        uint16 open = s.roundsCompleted + 1;
        if (round != open || round > s.rounds) revert StudyRegistryWrongRound(studyId, round, open);
        if (modelHash == bytes32(0)) revert StudyRegistryZeroHash();
        if (contributors.length == 0) revert StudyRegistryNoContributors();
        address previous;
        for (uint256 i = 0; i < contributors.length; ++i) {
            address h = contributors[i];
            if (h <= previous) revert StudyRegistryUnsortedContributors(h);
            if (_contributions[_key(studyId, round, h)].cohortCount == 0) {
                revert StudyRegistryMissingContribution(studyId, round, h);
            }
            previous = h;
        }
        uint64 spent = s.privacySpent;
        if (spent + privacySpent > s.privacyBudget) {
            revert StudyRegistryPrivacyBudgetExceeded(studyId, spent, privacySpent, s.privacyBudget);
        }
        s.privacySpent = spent + privacySpent;
        s.roundsCompleted = round;
        _roundModels[studyId][round] = modelHash;
        emit RoundRecorded(studyId, round, modelHash, contributors, privacySpent);
    }

    /**
     * @notice Complete study `studyId` with its final model's hash; at least one round recorded.
     * Only an account holding the coordinator role may call.
     * @dev A study may be completed before all its requested rounds are recorded; the event
     * reports the number of rounds actually recorded.
     *
     * Emits a {StudyCompleted} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the coordinator
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Running`.
     * Reverts with {StudyRegistryWrongRound} (round 0, expected 1) if no round was recorded yet.
     * Reverts with {StudyRegistryZeroHash} if `finalModelHash` is zero.
     *
     * @param studyId The running study to complete.
     * @param finalModelHash Hash of the final model.
     */
    function complete(uint256 studyId, bytes32 finalModelHash) external onlyRole(Roles.COORDINATOR) {
        Study storage s = _existing(studyId);
        if (s.status != Status.Running) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Running);
        if (s.roundsCompleted == 0) revert StudyRegistryWrongRound(studyId, 0, 1);
        if (finalModelHash == bytes32(0)) revert StudyRegistryZeroHash();
        s.status = Status.Completed;
        s.finalModelHash = finalModelHash;
        emit StudyCompleted(studyId, finalModelHash, s.roundsCompleted);
    }

    // ---------------------------------------------------------------- views

    /// @notice The study `studyId`; reverts if it does not exist.
    function study(uint256 studyId) external view returns (Study memory) {
        return _existing(studyId);
    }

    /// @notice The hospitals named in study `studyId`, in request order.
    function hospitalsOf(uint256 studyId) external view returns (address[] memory) {
        _existing(studyId);
        return _hospitals[studyId];
    }

    /// @notice `hospital`'s decision on study `studyId` (None if not named).
    function decisionOf(uint256 studyId, address hospital) external view returns (Decision) {
        return _decisions[studyId][hospital];
    }

    /// @notice `hospital`'s contribution to `round` of `studyId` (all zero if none).
    function contributionOf(uint256 studyId, uint16 round, address hospital)
        external
        view
        returns (Contribution memory)
    {
        return _contributions[_key(studyId, round, hospital)];
    }

    /// @notice The aggregated model hash of `round` of `studyId` (zero if not recorded).
    function roundModelHash(uint256 studyId, uint16 round) external view returns (bytes32) {
        return _roundModels[studyId][round];
    }

    /// @notice The number of studies requested so far (ids run from 1 to this).
    function studyCount() external view returns (uint256) {
        return _nextId - 1;
    }

    /**
     * @notice Whether `leaf` is in `hospital`'s cohort for `round` of `studyId`, by Merkle `proof`.
     * @dev Lets a patient check, from a proof the hospital gives them, that their record was used.
     */
    function inCohort(uint256 studyId, uint16 round, address hospital, bytes32 leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        bytes32 root = _contributions[_key(studyId, round, hospital)].cohortRoot;
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, leaf);
    }

    // ---------------------------------------------------------------- internals

    /// @dev The stored study `studyId`; reverts with {StudyRegistryUnknownStudy} if it does not
    /// exist.
    function _existing(uint256 studyId) private view returns (Study storage s) {
        s = _studies[studyId];
        if (s.status == Status.None) revert StudyRegistryUnknownStudy(studyId);
    }

    /// @dev The study `studyId`, on which the caller has yet to decide. Reverts with
    /// {StudyRegistryUnknownStudy}, {StudyRegistryUnexpectedStatus} (not `Requested`),
    /// {StudyRegistryNotInvited} or {StudyRegistryAlreadyDecided}.
    function _pendingDecision(uint256 studyId) private view returns (Study storage s) {
        s = _existing(studyId);
        if (s.status != Status.Requested) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Requested);
        Decision d = _decisions[studyId][msg.sender];
        if (d == Decision.None) revert StudyRegistryNotInvited(studyId, msg.sender);
        if (d != Decision.Pending) revert StudyRegistryAlreadyDecided(studyId, msg.sender, d);
    }

    function _key(uint256 studyId, uint16 round, address hospital) private pure returns (bytes32) {
        return keccak256(abi.encode(studyId, round, hospital));
    }
}
