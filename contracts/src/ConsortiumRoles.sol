// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {Roles} from "./Roles.sol";

/**
 * @title ConsortiumRoles
 * @notice The one place where the consortium says who is a hospital, a researcher or the
 * coordinator. Every other MeTAI contract asks this contract, so granting or revoking a role
 * here takes effect everywhere at once.
 * @dev The consortium admin is OpenZeppelin's `DEFAULT_ADMIN_ROLE` under
 * {AccessControlDefaultAdminRules}: there is exactly one admin, it administers the three working
 * roles, and handing it to another account takes two steps separated by a delay
 * ({beginDefaultAdminTransfer}, then {acceptDefaultAdminTransfer} by the new admin once the
 * delay has passed), so a mistyped or stolen transfer can be cancelled. A consortium puts a
 * multisig wallet (for example a Safe) in the admin seat so no single key can change the roles.
 *
 * Separation of duties: the coordinator role is held alone. An account holding the coordinator
 * role cannot also be given the hospital or researcher role, nor the reverse, since the
 * coordinator starts studies and records the rounds hospitals contribute. The hospital and
 * researcher roles may be held together (a hospital's own research group), but the study
 * registry refuses a study whose researcher is one of its hospitals.
 *
 * Role changes emit AccessControl's `RoleGranted` / `RoleRevoked` events, also for the admin
 * seat's transfers. {grantRole} and {revokeRole} may be called only by the admin and revert with
 * {AccessControlUnauthorizedAccount} otherwise, and with {AccessControlEnforcedDefaultAdminRules}
 * for the admin role itself. {renounceRole} lets an account give up its own role.
 */
contract ConsortiumRoles is AccessControlDefaultAdminRules {
    /// @notice Role of a hospital node: registers datasets, decides on studies, contributes rounds.
    bytes32 public constant HOSPITAL_ROLE = Roles.HOSPITAL;
    /// @notice Role of a researcher: requests studies.
    bytes32 public constant RESEARCHER_ROLE = Roles.RESEARCHER;
    /// @notice Role of the coordinator: starts studies, records rounds, completes studies.
    bytes32 public constant COORDINATOR_ROLE = Roles.COORDINATOR;

    /// @notice `account` holds `held`, which may not be combined with `role`.
    error ConsortiumRolesIncompatibleRoles(address account, bytes32 role, bytes32 held);

    /**
     * @notice Create the registry with `admin` as consortium admin and `adminDelay` seconds as
     * the wait before an admin transfer can be accepted.
     * @dev Emits a {RoleGranted} event for `DEFAULT_ADMIN_ROLE`, with `admin` as the account and
     * the deployer as the sender. No working role is granted here.
     * Reverts with {AccessControlInvalidDefaultAdmin} if `admin` is the zero address.
     * @param adminDelay Seconds between beginning and accepting a transfer of the admin seat.
     * @param admin The consortium admin (may grant and revoke every working role).
     */
    constructor(uint48 adminDelay, address admin) AccessControlDefaultAdminRules(adminDelay, admin) {}

    /**
     * @dev Refuses a working role that may not be combined with one `account` already holds,
     * with {ConsortiumRolesIncompatibleRoles}; otherwise grants as AccessControl does.
     */
    function _grantRole(bytes32 role, address account) internal override returns (bool) {
        if (role == Roles.COORDINATOR) {
            _refuseIfHeld(account, role, Roles.HOSPITAL);
            _refuseIfHeld(account, role, Roles.RESEARCHER);
        } else if (role == Roles.HOSPITAL || role == Roles.RESEARCHER) {
            _refuseIfHeld(account, role, Roles.COORDINATOR);
        }
        return super._grantRole(role, account);
    }

    function _refuseIfHeld(address account, bytes32 role, bytes32 held) private view {
        if (hasRole(held, account)) revert ConsortiumRolesIncompatibleRoles(account, role, held);
    }
}
