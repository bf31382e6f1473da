"""The data-use vocabulary of ``DataUse.sol`` and the consent scopes a use can be permitted by.

Written from the Solidity source, not from the project's client: kinds are a bit set, purposes
follow the GA4GH Data Use Ontology (GRU covers HMB, HMB covers every disease-specific DS code).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from eth_abi.abi import encode
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak

from audit.errors import InvalidUse

ANY_HOSPITAL = "0x0000000000000000000000000000000000000000"
ANY_STUDY = 0
KIND_IMAGE = 1
KIND_CT_SINOGRAM = 2
KIND_MR_KSPACE = 4
KIND_DERIVED = 8
ALL_KINDS = 15


class Purpose(IntEnum):
    """DUO research purposes, as ``DataUse.PURPOSE_*``."""

    GRU = 1  # general research use
    HMB = 2  # health / medical / biomedical research
    DS = 3  # disease-specific research, with a disease code


def valid_purpose(purpose: int, disease: int) -> bool:
    """Return whether (purpose, disease) is a purpose code the contracts accept."""
    if purpose == Purpose.DS:
        return 0 < disease < 2**32
    return purpose in (Purpose.GRU, Purpose.HMB) and disease == 0


@dataclass(frozen=True)
class Scope:
    """Where a consent applies: a hospital (or :data:`ANY_HOSPITAL`), a purpose, a study (or :data:`ANY_STUDY`)."""

    hospital: str
    purpose: int
    disease: int
    study_id: int


@dataclass(frozen=True)
class Use:
    """A use of data asked about: by a hospital, of a set of kinds, for a purpose and a study.

    Raises:
        InvalidUse: the hospital is not an address, ``kinds`` is empty or has undefined bits, or
            (purpose, disease) is not a purpose code (the contract's views revert on these too).
    """

    hospital: str
    kinds: int
    purpose: int
    disease: int = 0
    study_id: int = ANY_STUDY

    def __post_init__(self) -> None:
        if not is_address(self.hospital):
            raise InvalidUse(f"use hospital {self.hospital!r} is not a 0x address")
        object.__setattr__(self, "hospital", to_checksum_address(self.hospital))
        if self.kinds <= 0 or self.kinds & ~ALL_KINDS:
            raise InvalidUse(f"use kinds {self.kinds} is not a non-empty subset of {ALL_KINDS} "
                             "(1 image, 2 CT sinogram, 4 MR k-space, 8 derived)")
        if not valid_purpose(self.purpose, self.disease):
            raise InvalidUse(f"use purpose ({self.purpose}, disease {self.disease}) is not a purpose code: "
                             "GRU (1) and HMB (2) take disease 0, DS (3) a disease code from 1 to 2**32 - 1")
        if not 0 <= self.study_id < 2**256:
            raise InvalidUse(f"use study id {self.study_id} is not a uint256")


def consent_id(patient: str, scope: Scope) -> bytes:
    """Return the id ``ConsentRegistry`` keys ``patient``'s consent under ``scope`` by.

    keccak256(abi.encode(patient, hospital, uint8 purpose, uint32 disease, uint256 studyId)).
    """
    return keccak(encode(["address", "address", "uint8", "uint32", "uint256"],
                         [to_checksum_address(patient), to_checksum_address(scope.hospital), scope.purpose,
                          scope.disease, scope.study_id]))


def _purposes(purpose: int, disease: int) -> list[tuple[int, int]]:
    """The use's purpose, then each broader purpose that covers it (DS -> HMB -> GRU)."""
    chain = [(purpose, disease)]
    if purpose == Purpose.DS:
        chain.append((Purpose.HMB, 0))
    if purpose in (Purpose.DS, Purpose.HMB):
        chain.append((Purpose.GRU, 0))
    return chain


def candidate_scopes(use: Use) -> list[Scope]:
    """Return every scope a consent permitting ``use`` could have been granted under, most specific first.

    For each purpose from the use's own to the broadest: the named hospital then any hospital,
    and within each the named study then any study; a "then any" is left out where the use
    already names none. At most 3 x 2 x 2 = 12 scopes, in the order of the contract's
    ``_candidate``, so the first one with a consent is the one ``explain`` reports on.
    """
    hospitals = [use.hospital] if use.hospital == ANY_HOSPITAL else [use.hospital, ANY_HOSPITAL]
    studies = [use.study_id] if use.study_id == ANY_STUDY else [use.study_id, ANY_STUDY]
    return [Scope(hospital, purpose, disease, study)
            for purpose, disease in _purposes(use.purpose, use.disease)
            for hospital in hospitals
            for study in studies]
