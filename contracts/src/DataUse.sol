// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title DataUse
 * @notice Shared vocabulary of the exchange: data kinds and research purposes.
 * @dev Data kinds form a bit set. Purposes follow the GA4GH Data Use Ontology (DUO):
 * general research use (GRU) covers every research purpose; health/medical/biomedical research
 * (HMB) covers HMB and every disease-specific purpose; disease-specific research (DS) covers
 * only research on its own disease, named by a numeric disease code (for example the number of
 * a MONDO term). Disease code 0 is reserved for "no disease" and only valid with GRU and HMB.
 */
library DataUse {
    /// @notice Reconstructed or acquired images (DICOM).
    uint8 internal constant KIND_IMAGE = 1;
    /// @notice Raw CT projection data (sinograms).
    uint8 internal constant KIND_CT_SINOGRAM = 2;
    /// @notice Raw MRI k-space.
    uint8 internal constant KIND_MR_KSPACE = 4;
    /// @notice Data derived from other data (for example images reconstructed from raw data).
    uint8 internal constant KIND_DERIVED = 8;
    /// @notice All defined kinds.
    uint8 internal constant ALL_KINDS = 15;

    /// @notice DUO general research use.
    uint8 internal constant PURPOSE_GRU = 1;
    /// @notice DUO health, medical or biomedical research.
    uint8 internal constant PURPOSE_HMB = 2;
    /// @notice DUO disease-specific research (with a disease code).
    uint8 internal constant PURPOSE_DS = 3;

    /// @notice Whether `kinds` is a non-empty set of defined kinds.
    function validKinds(uint8 kinds) internal pure returns (bool) {
        return kinds != 0 && (kinds & ~ALL_KINDS) == 0;
    }

    /// @notice Whether (`purpose`, `disease`) is a well-formed purpose code.
    function validPurpose(uint8 purpose, uint32 disease) internal pure returns (bool) {
        if (purpose == PURPOSE_DS) return disease != 0;
        return (purpose == PURPOSE_GRU || purpose == PURPOSE_HMB) && disease == 0;
    }
}
