"""The exchange's data-use vocabulary, mirroring ``DataUse.sol``.

Data kinds form a bit set; purposes follow the GA4GH Data Use Ontology: general research use
(GRU) covers every purpose, health/medical/biomedical (HMB) covers itself and every
disease-specific purpose, disease-specific (DS) covers only its own disease code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, IntFlag

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
#: Scope hospital meaning "any hospital".
ANY_HOSPITAL = ZERO_ADDRESS
#: Scope study meaning "any study with this purpose".
ANY_STUDY = 0
#: The largest expiry the contract can store: a consent that does not lapse by itself.
NO_EXPIRY = 2**64 - 1


class Kind(IntFlag):
    """Kinds of data a record or a consent covers."""

    IMAGE = 1
    CT_SINOGRAM = 2
    MR_KSPACE = 4
    DERIVED = 8


ALL_KINDS = Kind.IMAGE | Kind.CT_SINOGRAM | Kind.MR_KSPACE | Kind.DERIVED


class Purpose(IntEnum):
    """DUO research purposes."""

    GRU = 1  # general research use
    HMB = 2  # health / medical / biomedical research
    DS = 3  # disease-specific research (with a disease code)


def check_purpose(purpose: Purpose, disease: int) -> None:
    """Raise ValueError unless (purpose, disease) is a valid purpose code."""
    if purpose == Purpose.DS and not 0 < disease < 2**32:
        raise ValueError(f"disease-specific purpose needs a disease code in 1..2**32-1, got {disease}")
    if purpose != Purpose.DS and disease != 0:
        raise ValueError(f"purpose {purpose.name} takes no disease code, got {disease}; use Purpose.DS")


def covers(granted: Purpose, granted_disease: int, wanted: Purpose, wanted_disease: int) -> bool:
    """Whether a consent for ``granted`` permits research for ``wanted`` (DUO hierarchy)."""
    if granted == Purpose.GRU:
        return True
    if granted == Purpose.HMB:
        return wanted in (Purpose.HMB, Purpose.DS)
    return wanted == Purpose.DS and wanted_disease == granted_disease


@dataclass(frozen=True)
class Scope:
    """Where a consent applies: a hospital (or any), a purpose, a study (or any)."""

    hospital: str = ANY_HOSPITAL
    purpose: Purpose = Purpose.GRU
    disease: int = 0
    study_id: int = ANY_STUDY

    def __post_init__(self) -> None:
        check_purpose(self.purpose, self.disease)

    def as_tuple(self) -> tuple[str, int, int, int]:
        """The ABI tuple ``(hospital, purpose, disease, studyId)``."""
        return (self.hospital, int(self.purpose), self.disease, self.study_id)


@dataclass(frozen=True)
class Use:
    """A use of data a node wants to make: by a hospital, of kinds, for a purpose and study."""

    hospital: str
    kinds: Kind
    purpose: Purpose
    disease: int = 0
    study_id: int = ANY_STUDY

    def __post_init__(self) -> None:
        check_purpose(self.purpose, self.disease)
        if not self.kinds or int(self.kinds) & ~int(ALL_KINDS):
            raise ValueError(f"kinds must be a non-empty set of Kind flags, got {int(self.kinds)}")

    def as_tuple(self) -> tuple[str, int, int, int, int]:
        """The ABI tuple ``(hospital, kinds, purpose, disease, studyId)``."""
        return (self.hospital, int(self.kinds), int(self.purpose), self.disease, self.study_id)
