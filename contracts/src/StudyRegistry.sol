// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {DataUse} from "./DataUse.sol";
import {RoleGated} from "./RoleGated.sol";
import {Roles} from "./Roles.sol";

/// @notice What the study registry asks the dataset registry: who registered a dataset.
interface IDatasetHolders {
    /// @notice The hospital that registered dataset `datasetId`, or the zero address.
    function hospitalOf(uint256 datasetId) external view returns (address);
}

/**
 * @title StudyRegistry
 * @notice The life of a federated training study: a researcher requests it; each named
 * hospital approves or declines; the coordinator starts it once every hospital approved; each
 * round, each hospital commits to the cohort it trained on (its Merkle root, its size, the
 * block whose consents it was computed at and the registered datasets it draws from) and the
 * update it sent; the coordinator records the aggregated model of the round; completion records
 * the final model and the hash of the study's lineage bundle (everything an auditor needs to
 * re-derive the study).
 * @dev A contribution stores only its cohort root (one storage slot, so a round costs each
 * hospital one fresh slot); its count, cohort block, datasets and update hash are in its
 * {ContributionRecorded} event, which is as much a part of the chain's record as storage.
 * Privacy budgets are in milli-epsilon (1000 = epsilon 1.0); a budget of 0 means the study uses
 * no differential privacy, and then every round must spend 0.
 */
contract StudyRegistry is RoleGated {
    /// @notice Where a study is in its life.
    enum Status {
        None,
        Requested,
        Declined,
        Running,
        Completed,
        Withdrawn
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
        uint64 roundOpenedAtBlock; // block that opened the current round (start, or the last record)
        bytes32 taskCodeHash;
        uint64 privacyBudget;
        uint64 privacySpent;
        uint64 requestedAtBlock;
        uint64 startedAtBlock;
        bytes32 finalModelHash;
        bytes32 lineageHash;
    }

    /// @notice The dataset registry, asked who registered the datasets a contribution names.
    IDatasetHolders public immutable datasets;

    uint256 private _nextId = 1; // starts non-zero so no request pays for a fresh slot
    mapping(uint256 studyId => Study) private _studies;
    mapping(uint256 studyId => address[]) private _hospitals;
    mapping(uint256 studyId => mapping(address hospital => Decision)) private _decisions;
    mapping(bytes32 key => bytes32 cohortRoot) private _cohortRoots;
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
    /// @notice `researcher` withdrew study `studyId` before it started; it can no longer start.
    event StudyWithdrawn(uint256 indexed studyId, address indexed researcher);
    /// @notice `coordinator` started study `studyId`.
    event StudyStarted(uint256 indexed studyId, address indexed coordinator);
    /// @notice `hospital` trained round `round` of `studyId` on the committed cohort: `cohortCount`
    /// records, permitted as of block `cohortBlock`, drawn from its registered `datasetIds`.
    event ContributionRecorded(
        uint256 indexed studyId,
        uint16 indexed round,
        address indexed hospital,
        bytes32 cohortRoot,
        uint64 cohortCount,
        uint64 cohortBlock,
        uint256[] datasetIds,
        bytes32 updateHash
    );
    /// @notice Round `round` of `studyId` was aggregated into `modelHash` from `contributors`.
    event RoundRecorded(
        uint256 indexed studyId, uint16 indexed round, bytes32 modelHash, address[] contributors, uint64 privacySpent
    );
    /// @notice Study `studyId` completed after `rounds` rounds with final model `finalModelHash`;
    /// `lineageHash` is the hash of its lineage bundle.
    event StudyCompleted(uint256 indexed studyId, bytes32 finalModelHash, bytes32 lineageHash, uint16 rounds);

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
    /// @notice Every one of study `studyId`'s `rounds` rounds is recorded; no round is open.
    error StudyRegistryNoOpenRound(uint256 studyId, uint16 rounds);
    /// @notice `researcher` named itself among the study's hospitals (it cannot approve its own study).
    error StudyRegistryResearcherIsHospital(address researcher);
    /// @notice Only study `studyId`'s researcher may do this; `caller` is not.
    error StudyRegistryNotResearcher(uint256 studyId, address caller);
    /// @notice The cohort block `cohortBlock` is outside [`openedAt`, `txBlock`]: before the round
    /// opened, or after the contribution's own block.
    error StudyRegistryCohortBlockOutOfRange(uint64 cohortBlock, uint64 openedAt, uint256 txBlock);
    /// @notice A contribution must name at least one dataset.
    error StudyRegistryNoDatasets();
    /// @notice Dataset ids must be given in strictly increasing order; `datasetId` is not.
    error StudyRegistryUnsortedDatasets(uint256 datasetId);
    /// @notice Dataset `datasetId` is not registered by `hospital` (or not registered at all).
    error StudyRegistryForeignDataset(uint256 datasetId, address hospital);
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
     * @dev Emits no event. Reverts with {RoleGatedZeroRegistry} if `roles_` or `datasets_` is the
     * zero address.
     * @param roles_ The consortium role registry.
     * @param datasets_ The dataset registry contributions are checked against.
     */
    constructor(IAccessControl roles_, IDatasetHolders datasets_) RoleGated(roles_) {
        if (address(datasets_) == address(0)) revert RoleGatedZeroRegistry();
        datasets = datasets_;
    }

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
     * Reverts with {StudyRegistryResearcherIsHospital} if the caller names itself as a hospital
     * (separation of duties: a researcher cannot approve its own study).
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
            if (h == msg.sender) revert StudyRegistryResearcherIsHospital(h);
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

    /**
     * @notice Withdraw study `studyId` before it starts, for instance because a named hospital
     * never decides or lost its role. Only the study's researcher, still holding the researcher
     * role, may call.
     * @dev The study's status becomes `Withdrawn`, and every later {approve}, {decline},
     * {start} or {withdraw} on it reverts with {StudyRegistryUnexpectedStatus}.
     *
     * Emits a {StudyWithdrawn} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the researcher
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryNotResearcher} if the caller is not the study's researcher.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Requested`.
     *
     * @param studyId The study to withdraw.
     */
    function withdraw(uint256 studyId) external onlyRole(Roles.RESEARCHER) {
        Study storage s = _existing(studyId);
        if (s.researcher != msg.sender) revert StudyRegistryNotResearcher(studyId, msg.sender);
        if (s.status != Status.Requested) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Requested);
        s.status = Status.Withdrawn;
        emit StudyWithdrawn(studyId, msg.sender);
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
     * @notice Commit the calling hospital's contribution to the open round of `studyId`: the
     * cohort it trained on, the block whose consents the cohort was computed at, the registered
     * datasets the cohort's records come from, and the hash of the update it sent. Only a
     * hospital that approved the study and still holds the hospital role may call, once per round.
     * @dev The caller must still hold the hospital role: a hospital the consortium removed
     * after it approved the study can no longer add rounds to it. The cohort block must not be
     * later than this transaction's block nor earlier than the block that opened the round, so
     * the consents the cohort relied on are those in force during the round. A node reads the
     * consents at the latest mined block (the state after that block's transactions) and names
     * that block; gas estimation runs at that same block, which the bound allows. Each named dataset must be
     * registered by the caller; that every cohort record is a member of one of them is checked
     * off chain, with the datasets' Merkle proofs. Only the cohort root is stored.
     *
     * Emits a {ContributionRecorded} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the hospital
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Running`.
     * Reverts with {StudyRegistryNotParticipant} if the caller did not approve the study
     * (including a hospital the study does not name).
     * Reverts with {StudyRegistryNoOpenRound} if every round of the study is recorded.
     * Reverts with {StudyRegistryWrongRound} if `round` is not the open round (one past the
     * rounds recorded so far).
     * Reverts with {StudyRegistryInvalidCohort} if `cohortRoot` is zero or `cohortCount` is zero.
     * Reverts with {StudyRegistryCohortBlockOutOfRange} if `cohortBlock` is before the round
     * opened or after this transaction's block.
     * Reverts with {StudyRegistryZeroHash} if `updateHash` is zero.
     * Reverts with {StudyRegistryAlreadyContributed} if the caller already contributed to `round`.
     * Reverts with {StudyRegistryNoDatasets} if `datasetIds` is empty.
     * Reverts with {StudyRegistryUnsortedDatasets} if `datasetIds` is not strictly increasing.
     * Reverts with {StudyRegistryForeignDataset} if a named dataset is not registered by the caller.
     *
     * @param studyId The running study contributed to.
     * @param round The open round (rounds count from 1).
     * @param cohortRoot Merkle root over the leaves of the records trained on.
     * @param cohortCount Number of records trained on.
     * @param cohortBlock The block at whose state the cohort's consents were read.
     * @param datasetIds The caller's registered datasets holding the cohort's records, increasing.
     * @param updateHash Hash of the model update sent to the coordinator.
     */
    function contribute(
        uint256 studyId,
        uint16 round,
        bytes32 cohortRoot,
        uint64 cohortCount,
        uint64 cohortBlock,
        uint256[] calldata datasetIds,
        bytes32 updateHash
    ) external onlyRole(Roles.HOSPITAL) {
        Study storage s = _existing(studyId);
        if (s.status != Status.Running) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Running);
        Decision d = _decisions[studyId][msg.sender];
        if (d != Decision.Approved) revert StudyRegistryNotParticipant(studyId, msg.sender, d);
        _checkOpen(s, studyId, round);
        if (cohortRoot == bytes32(0) || cohortCount == 0) revert StudyRegistryInvalidCohort(cohortRoot, cohortCount);
        uint64 opened = s.roundOpenedAtBlock;
        if (cohortBlock < opened || cohortBlock > block.number) {
            revert StudyRegistryCohortBlockOutOfRange(cohortBlock, opened, block.number);
        }
        if (updateHash == bytes32(0)) revert StudyRegistryZeroHash();
        bytes32 key = _key(studyId, round, msg.sender);
        if (_cohortRoots[key] != bytes32(0)) revert StudyRegistryAlreadyContributed(studyId, round, msg.sender);
        _checkDatasets(datasetIds);
        _cohortRoots[key] = cohortRoot;
        emit ContributionRecorded(
            studyId, round, msg.sender, cohortRoot, cohortCount, cohortBlock, datasetIds, updateHash
        );
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
        s.roundOpenedAtBlock = uint64(block.number);
        emit StudyStarted(studyId, msg.sender);
    }

    /**
     * @notice Record the aggregation of the open round of `studyId`. Only an account holding the
     * coordinator role may call.
     * @dev Every listed contributor must have contributed to this round and must still hold the
     * hospital role: a hospital the consortium removed after it contributed is not aggregated.
     * Hospitals that contributed but are not listed are simply left out. Recording a round closes
     * it and opens the next one, if any.
     *
     * Emits a {RoundRecorded} event.
     *
     * Reverts with {AccessControlUnauthorizedAccount} if the caller does not hold the coordinator
     * role in the {roles} registry.
     * Reverts with {StudyRegistryUnknownStudy} if study `studyId` does not exist.
     * Reverts with {StudyRegistryUnexpectedStatus} if the study is not `Running`.
     * Reverts with {StudyRegistryNoOpenRound} if every round of the study is recorded.
     * Reverts with {StudyRegistryWrongRound} if `round` is not the open round.
     * Reverts with {StudyRegistryZeroHash} if `modelHash` is zero.
     * Reverts with {StudyRegistryNoContributors} if `contributors` is empty.
     * Reverts with {StudyRegistryUnsortedContributors} if `contributors` is not in strictly
     * increasing address order (so also on a repeated address or the zero address).
     * Reverts with {StudyRegistryMissingContribution} if a listed hospital did not contribute to
     * `round`.
     * Reverts with {StudyRegistryNotAHospital} if a listed hospital no longer holds the hospital
     * role.
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
        _checkOpen(s, studyId, round);
        if (modelHash == bytes32(0)) revert StudyRegistryZeroHash();
        if (contributors.length == 0) revert StudyRegistryNoContributors();
        address previous;
        for (uint256 i = 0; i < contributors.length; ++i) {
            address h = contributors[i];
            if (h <= previous) revert StudyRegistryUnsortedContributors(h);
            if (_cohortRoots[_key(studyId, round, h)] == bytes32(0)) {
                revert StudyRegistryMissingContribution(studyId, round, h);
            }
            if (!roles.hasRole(Roles.HOSPITAL, h)) revert StudyRegistryNotAHospital(h);
            previous = h;
        }
        uint64 spent = s.privacySpent;
        // In 256 bits: two uint64 near 2^64 would overflow their own type.
        if (uint256(spent) + privacySpent > s.privacyBudget) {
            revert StudyRegistryPrivacyBudgetExceeded(studyId, spent, privacySpent, s.privacyBudget);
        }
        s.privacySpent = spent + privacySpent;
        s.roundsCompleted = round;
        s.roundOpenedAtBlock = uint64(block.number);
        _roundModels[studyId][round] = modelHash;
        emit RoundRecorded(studyId, round, modelHash, contributors, privacySpent);
    }

    /**
     * @notice Complete study `studyId` with its final model's hash and its lineage bundle's hash;
     * at least one round recorded. Only an account holding the coordinator role may call.
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
     * Reverts with {StudyRegistryZeroHash} if `finalModelHash` or `lineageHash` is zero.
     *
     * @param studyId The running study to complete.
     * @param finalModelHash Hash of the final model.
     * @param lineageHash Hash of the study's lineage bundle (what an auditor re-derives it from).
     */
    function complete(uint256 studyId, bytes32 finalModelHash, bytes32 lineageHash)
        external
        onlyRole(Roles.COORDINATOR)
    {
        Study storage s = _existing(studyId);
        if (s.status != Status.Running) revert StudyRegistryUnexpectedStatus(studyId, s.status, Status.Running);
        if (s.roundsCompleted == 0) revert StudyRegistryWrongRound(studyId, 0, 1);
        if (finalModelHash == bytes32(0) || lineageHash == bytes32(0)) revert StudyRegistryZeroHash();
        s.status = Status.Completed;
        s.finalModelHash = finalModelHash;
        s.lineageHash = lineageHash;
        emit StudyCompleted(studyId, finalModelHash, lineageHash, s.roundsCompleted);
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

    /// @notice The cohort root `hospital` committed to `round` of `studyId` (zero if it did not
    /// contribute); the rest of the contribution is in its {ContributionRecorded} event.
    function cohortRootOf(uint256 studyId, uint16 round, address hospital) external view returns (bytes32) {
        return _cohortRoots[_key(studyId, round, hospital)];
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
        bytes32 root = _cohortRoots[_key(studyId, round, hospital)];
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

    /// @dev Reverts with {StudyRegistryNoOpenRound} if study `s` has recorded all its rounds, or
    /// with {StudyRegistryWrongRound} if `round` is not the open one. `roundsCompleted` is below
    /// `rounds` (at most 65535) when the open round is computed, so it cannot overflow.
    function _checkOpen(Study storage s, uint256 studyId, uint16 round) private view {
        uint16 done = s.roundsCompleted;
        if (done >= s.rounds) revert StudyRegistryNoOpenRound(studyId, s.rounds);
        if (round != done + 1) revert StudyRegistryWrongRound(studyId, round, done + 1);
    }

    /// @dev Reverts with {StudyRegistryNoDatasets}, {StudyRegistryUnsortedDatasets} or
    /// {StudyRegistryForeignDataset} unless `ids` is a non-empty, increasing list of datasets the
    /// caller registered.
    function _checkDatasets(uint256[] calldata ids) private view {
        if (ids.length == 0) revert StudyRegistryNoDatasets();
        uint256 previous;
        for (uint256 i = 0; i < ids.length; ++i) {
            uint256 id = ids[i];
            if (id <= previous) revert StudyRegistryUnsortedDatasets(id);
            if (datasets.hospitalOf(id) != msg.sender) revert StudyRegistryForeignDataset(id, msg.sender);
            previous = id;
        }
    }

    function _key(uint256 studyId, uint16 round, address hospital) private pure returns (bytes32) {
        return keccak256(abi.encode(studyId, round, hospital));
    }
}
