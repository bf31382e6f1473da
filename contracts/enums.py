"""The contracts' role identifiers and Solidity enums, as Python values.

A leaf of the chain layer: it imports nothing of it, so that error formatting
(``contracts.errors``) and revert decoding (``contracts.reverts``) can name roles and
study states without importing the clients that send transactions. ``contracts.roles``
and ``contracts.studies`` re-export these names.
"""

from __future__ import annotations

from enum import Enum, IntEnum

from eth_utils.crypto import keccak

__all__ = ["ENUMS_BY_SOLIDITY_NAME", "Decision", "Role", "StudyStatus"]


class Role(Enum):
    """Consortium roles and their on-chain identifiers."""

    CONSORTIUM_ADMIN = bytes(32)
    HOSPITAL = keccak(text="HOSPITAL_ROLE")
    RESEARCHER = keccak(text="RESEARCHER_ROLE")
    COORDINATOR = keccak(text="COORDINATOR_ROLE")


class StudyStatus(IntEnum):
    """Mirror of ``StudyRegistry.Status``."""

    NONE = 0
    REQUESTED = 1
    DECLINED = 2
    RUNNING = 3
    COMPLETED = 4
    WITHDRAWN = 5


class Decision(IntEnum):
    """Mirror of ``StudyRegistry.Decision``."""

    NONE = 0  # not named in the study
    PENDING = 1
    APPROVED = 2
    DECLINED = 3


#: Solidity enum names to their Python mirrors, for decoding revert arguments.
ENUMS_BY_SOLIDITY_NAME: dict[str, type[IntEnum]] = {
    "StudyRegistry.Status": StudyStatus,
    "StudyRegistry.Decision": Decision,
}
