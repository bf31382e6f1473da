// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IAccessControl} from "@openzeppelin/contracts/access/IAccessControl.sol";

/**
 * @title RoleGated
 * @notice Base for MeTAI contracts whose functions are restricted to a consortium role held in
 * the shared {ConsortiumRoles} registry.
 * @dev A missing role reverts with OpenZeppelin's `AccessControlUnauthorizedAccount(account,
 * role)`, the same error the registry itself uses, so clients handle one error for all.
 */
abstract contract RoleGated {
    /// @notice The shared role registry this contract consults.
    IAccessControl public immutable roles;

    /// @notice The role registry was given the zero address.
    error RoleGatedZeroRegistry();

    /**
     * @dev Binds the contract to the role registry `roles_` for good (it is immutable).
     * Reverts with {RoleGatedZeroRegistry} if `roles_` is the zero address.
     * @param roles_ The consortium role registry.
     */
    constructor(IAccessControl roles_) {
        if (address(roles_) == address(0)) revert RoleGatedZeroRegistry();
        roles = roles_;
    }

    /**
     * @dev Restricts a function to accounts holding `role` in the {roles} registry.
     * Reverts with {AccessControlUnauthorizedAccount}(caller, `role`) otherwise.
     * @param role The role the caller must hold.
     */
    modifier onlyRole(bytes32 role) {
        _checkRole(role, msg.sender);
        _;
    }

    /**
     * @dev Reverts with {AccessControlUnauthorizedAccount}(`account`, `role`) unless `account`
     * holds `role` in the {roles} registry, asked by an external call.
     * @param role The role required.
     * @param account The account that must hold it.
     */
    function _checkRole(bytes32 role, address account) internal view {
        if (!roles.hasRole(role, account)) {
            revert IAccessControl.AccessControlUnauthorizedAccount(account, role);
        }
    }
}
