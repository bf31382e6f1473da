"""Cohort proofs: what hospitals publish for patients, and what a patient sees of the use of their data."""

from __future__ import annotations

from pydantic import BaseModel, Field

from coordinator.models.common import Address, Hash32, Uint53, UtcDatetime
from coordinator.models.consents import ConsentPublic

#: Proofs one request may carry; a node sends a round's proofs in as many requests as it needs.
MAX_PROOFS = 200


class ProofIn(BaseModel):
    """One cohort member: the leaf's values (record, kind, patient) and its Merkle proof."""

    patient: Address
    record_id: str = Field(pattern=r"^[0-9a-f]{64}$", description="The record's content sha256 (hex)")
    kind: int = Field(ge=1, le=255)
    proof: list[Hash32] = Field(max_length=64)


class CohortProofsCreate(BaseModel):
    """Part (or all) of a round's cohort proofs, published by the hospital that anchored the cohort."""

    study_id: Uint53
    round: int = Field(ge=1, le=65535)
    cohort_root: Hash32
    cohort_count: int = Field(ge=1)
    proofs: list[ProofIn] = Field(max_length=MAX_PROOFS)
    complete: bool = Field(default=False, description="This request ends the round's publication")


class PublishedPublic(BaseModel):
    """How much of a round's cohort the hospital has published."""

    study_id: int
    round: int
    hospital: Address
    published: int
    cohort_count: int
    complete: bool


class RecordUse(BaseModel):
    """One of my records in a round's cohort, with what anyone needs to check it on chain."""

    record_id: str
    kind: int
    leaf: Hash32 = Field(description="keccak256(keccak256(abi.encode(record_id, kind, patient)))")
    proof: list[Hash32]


class RoundUse(BaseModel):
    """One round of a study at one hospital: whether my records were in its cohort."""

    round: int
    included: bool | None = Field(description="null while the hospital has not published the whole round")
    block: int = Field(description="Block of the hospital's anchored contribution")
    contribution_tx: Hash32
    cohort_root: Hash32
    cohort_count: int
    records: list[RecordUse]


class DataUsePublic(BaseModel):
    """A study that used (or could have used) my data at one hospital, round by round."""

    study_id: int
    purpose_words: str
    researcher: Address
    hospital: Address
    rounds: list[RoundUse]
    check: str = Field(description="The view that verifies a proof: StudyRegistry.inCohort(studyId, round, "
                                   "hospital, leaf, proof)")
    study_registry: Address


class ReceiptPublic(BaseModel):
    """Everything about my data, verifiable without trusting the coordinator (format metai-patient-receipt 1)."""

    format: str = "metai-patient-receipt"
    version: int = 1
    proof_mode: str = Field(default="plain", description="plain: data_uses holds my proofs; sealed: they are "
                                                         "encrypted to my key and found as how_to_verify says")
    patient: Address
    generated_at: UtcDatetime
    chain_id: int
    contracts: dict[str, Address]
    consents: list[ConsentPublic]
    data_uses: list[DataUsePublic]
    how_to_verify: list[str]
