// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {Roles} from "./Roles.sol";

/**
 * @title ConsortiumRoles
 * @notice The one place where the consortium says who is a hospital, a researcher or the
 * coordinator. Every other MeTAI contract asks this contract, so granting or revoking a role
 * here takes effect everywhere at once.
 * @dev The consortium admin is OpenZeppelin's `DEFAULT_ADMIN_ROLE`; it administers the three
 * working roles. Role changes emit AccessControl's `RoleGranted` / `RoleRevoked` events.
 * The state-changing functions are AccessControl's own: {grantRole} and {revokeRole} may be called
 * only by a holder of the role's admin role (`DEFAULT_ADMIN_ROLE` for every role here) and
 * revert with {AccessControlUnauthorizedAccount} otherwise; they emit {RoleGranted} or
 * {RoleRevoked} only if the account's membership actually changes. {renounceRole} lets an
 * account give up its own role and reverts with {AccessControlBadConfirmation} if
 * `callerConfirmation` is not the caller.
 */
contract ConsortiumRoles is AccessControl {
    /// @notice Role of a hospital node: registers datasets, decides on studies, contributes rounds.
    bytes32 public constant HOSPITAL_ROLE = Roles.HOSPITAL;
    /// @notice Role of a researcher: requests studies.
    bytes32 public constant RESEARCHER_ROLE = Roles.RESEARCHER;
    /// @notice Role of the coordinator: starts studies, records rounds, completes studies.
    bytes32 public constant COORDINATOR_ROLE = Roles.COORDINATOR;

    /// @notice The consortium admin was given the zero address.
    error ConsortiumRolesZeroAdmin();

    /**
     * @notice Create the registry with `admin` as consortium admin.
     * @dev Emits a {RoleGranted} event for `DEFAULT_ADMIN_ROLE`, with `admin` as the account and
     * the deployer as the sender. No working role is granted here.
     * Reverts with {ConsortiumRolesZeroAdmin} if `admin` is the zero address.
     * @param admin The consortium admin (may grant and revoke every role).
     */
    constructor(address admin) {
        if (admin == address(0)) revert ConsortiumRolesZeroAdmin();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }
}
