"""Consent requests and responses: typed data to sign, signed consents to relay, consents in plain words."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from contracts.datause import Kind, Purpose
from coordinator.models.common import Address, Hash32, Uint53, UtcDatetime

#: The data kinds by the names the API uses.
KIND_NAMES: dict[str, Kind] = {
    "image": Kind.IMAGE, "ct-sinogram": Kind.CT_SINOGRAM, "mr-kspace": Kind.MR_KSPACE, "derived": Kind.DERIVED,
}
KindName = Literal["image", "ct-sinogram", "mr-kspace", "derived"]
#: GA4GH Data Use Ontology purposes in plain words.
PURPOSE_WORDS: dict[Purpose, str] = {
    Purpose.GRU: "general research use (any research purpose)",
    Purpose.HMB: "health, medical or biomedical research",
    Purpose.DS: "research on one disease only",
}


def kind_names(kinds: int) -> list[KindName]:
    """The names of the kinds in a bit set, in a fixed order."""
    return [name for name, flag in KIND_NAMES.items() if kinds & flag]  # type: ignore[misc]


def kinds_of(names: list[KindName]) -> Kind:
    """The bit set of the named kinds."""
    out = Kind(0)
    for name in names:
        out |= KIND_NAMES[name]
    return out


class ConsentAction(StrEnum):
    """What the patient signs."""

    GRANT = "grant"
    REVOKE = "revoke"


class ScopeIn(BaseModel):
    """Where a consent applies."""

    hospital: Address | None = Field(default=None, description="One hospital, or null for any hospital")
    purpose: Literal["GRU", "HMB", "DS"] = Field(description="DUO purpose: GRU, HMB, or DS (with a disease code)")
    disease: int = Field(default=0, ge=0, le=2**32 - 1, description="Disease code, only with DS")
    study_id: Uint53 = Field(default=0, description="One study, or 0 for any study with this purpose")

    @model_validator(mode="after")
    def _disease(self) -> ScopeIn:
        if self.purpose == "DS" and self.disease == 0:
            raise ValueError("purpose DS needs a disease code (1 .. 4294967295)")
        if self.purpose != "DS" and self.disease != 0:
            raise ValueError(f"purpose {self.purpose} takes no disease code; use DS for one disease")
        return self


class TypedDataCreate(BaseModel):
    """Ask for the EIP-712 message of a grant or revocation, ready for eth_signTypedData_v4."""

    action: ConsentAction
    scope: ScopeIn
    kinds: list[KindName] = Field(default_factory=list, description="Data kinds a grant covers (not for revoke)")
    expires_at: Uint53 | None = Field(default=None, description="Unix seconds a grant lapses at; null: never")
    valid_for: int = Field(default=3600, ge=60, le=7 * 24 * 3600,
                           description="Seconds the signature may be relayed in (its deadline)")

    @model_validator(mode="after")
    def _kinds(self) -> TypedDataCreate:
        if self.action == ConsentAction.GRANT and not self.kinds:
            raise ValueError("a grant names at least one data kind")
        if self.action == ConsentAction.REVOKE and (self.kinds or self.expires_at is not None):
            raise ValueError("a revocation takes no kinds and no expiry")
        return self


class TypedDataPublic(BaseModel):
    """The message to sign: pass ``typed_data`` to the wallet as it is."""

    typed_data: dict[str, Any] = Field(description="EIP-712 typed data in the JSON form of eth_signTypedData_v4")
    nonce: int
    deadline: int
    summary: str = Field(description="What signing it does, in plain words")


class SignedConsentCreate(BaseModel):
    """A signed grant or revocation: the typed data as issued and the wallet's signature over it."""

    typed_data: dict[str, Any]
    signature: str = Field(pattern=r"^(0x)?[0-9a-fA-F]{130}$", description="65-byte signature, hex")


class RelayState(StrEnum):
    """Where a signed consent is: accepted, in a transaction, on chain, or refused."""

    PENDING = "pending"
    SENT = "sent"
    MINED = "mined"
    FAILED = "failed"


class ScopePublic(BaseModel):
    """A consent's scope, in codes and in words."""

    hospital: Address | None
    purpose: str
    disease: int
    study_id: int
    words: str


class RelayPublic(BaseModel):
    """A signed consent in the relay, and its outcome once known."""

    id: str
    action: ConsentAction
    state: RelayState
    scope: ScopePublic
    kinds: list[KindName] | None
    expires_at: int | None
    nonce: int
    deadline: int
    tx_hash: Hash32 | None
    block: int | None
    event: str | None = Field(description="ConsentGranted or ConsentRevoked once mined")
    consent_id: Hash32 | None
    error: str | None = Field(description="The contract's custom error name, when refused")
    error_detail: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ConsentState(StrEnum):
    """A consent's state now."""

    IN_FORCE = "in force"
    REVOKED = "revoked"
    EXPIRED = "expired"


class ConsentPublic(BaseModel):
    """One of my consents: its scope in words, what it covers and its state now."""

    consent_id: Hash32
    scope: ScopePublic
    kinds: list[KindName]
    expires_at: int | None = Field(description="Unix seconds; null: no expiry")
    granted_at_block: int
    granted_tx: Hash32
    revoked_at_block: int | None
    revoked_tx: Hash32 | None
    state: ConsentState
    words: str


class CancelPublic(BaseModel):
    """The transaction that cancels every outstanding signature; the patient sends it from their own address."""

    to: Address
    data: str = Field(description="Calldata of ConsentRegistry.cancelSignatures(upTo)")
    up_to: int = Field(description="Every signature with a nonce below this is void once mined")
    outstanding: list[str] = Field(description="Ids of relay items the cancellation voids")
