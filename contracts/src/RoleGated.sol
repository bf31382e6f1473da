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

    constructor(IAccessControl roles_) {
        if (address(roles_) == address(0)) revert RoleGatedZeroRegistry();
        roles = roles_;
    }

    modifier onlyRole(bytes32 role) {
        _checkRole(role, msg.sender);
        _;
    }

    function _checkRole(bytes32 role, address account) internal view {
        if (!roles.hasRole(role, account)) {
            revert IAccessControl.AccessControlUnauthorizedAccount(account, role);
        }
    }
}
