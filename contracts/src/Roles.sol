// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title Roles
 * @notice The consortium's role identifiers, shared by the registry and every gated contract.
 */
library Roles {
    /// @notice A hospital node: registers datasets, decides on studies, contributes rounds.
    bytes32 internal constant HOSPITAL = keccak256("HOSPITAL_ROLE");
    /// @notice A researcher: requests studies.
    bytes32 internal constant RESEARCHER = keccak256("RESEARCHER_ROLE");
    /// @notice The coordinator: starts studies, records rounds, completes studies.
    bytes32 internal constant COORDINATOR = keccak256("COORDINATOR_ROLE");
}
