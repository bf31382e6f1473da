"""Sealed cohort proofs: envelopes hospitals publish under tags, and what anyone may look up without signing in."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from contracts.sealing import MAX_PADDED, MIN_BUCKET, OVERHEAD, VERSION
from coordinator.models.common import Address, Hash32, Uint53

#: Envelopes one publication request may carry.
MAX_ITEMS = 200
#: Tags one lookup may ask for; a client with more asks in several requests.
MAX_TAGS = 256
#: The base64 of the largest envelope.
MAX_CIPHERTEXT = -(-(MAX_PADDED + OVERHEAD) // 3) * 4
#: The sizes an envelope may have: a padded bucket plus the envelope's own bytes.
ENVELOPE_SIZES = frozenset(MIN_BUCKET * 2**k + OVERHEAD for k in range((MAX_PADDED // MIN_BUCKET).bit_length()))


def _envelope(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected standard base64 (RFC 4648 section 4, with padding)") from None
    if raw[:1] != bytes([VERSION]):
        raise ValueError(f"expected an envelope of version {VERSION} (its first byte)")
    if len(raw) not in ENVELOPE_SIZES:
        raise ValueError(f"an envelope of {len(raw)} bytes is not padded to a bucket; expected one of "
                         f"{sorted(ENVELOPE_SIZES)[:3]}… (contracts/sealing.py)")
    return value


#: A tag: 0x and 64 lower-case hex digits.
Tag = Hash32
#: A secp256k1 public key as Ethereum keeps it: 0x and 128 hex digits (x || y).
PublicKey = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{128}$")]
#: An envelope (contracts/sealing.py) in base64.
Envelope = Annotated[str, Field(max_length=MAX_CIPHERTEXT), AfterValidator(_envelope)]


class SealedItem(BaseModel):
    """One patient's envelope of the round, under the tag the patient will look it up by."""

    tag: Tag
    ciphertext: Envelope


class SealedProofsCreate(BaseModel):
    """Part (or all) of a round's sealed envelopes, published by the hospital that anchored the cohort."""

    study_id: Uint53
    round: int = Field(ge=1, le=65535)
    cohort_root: Hash32
    cohort_count: int = Field(ge=1)
    hospital_public_key: PublicKey = Field(description="The hospital's own public key; it must hash to the "
                                                       "signed-in address. Patients derive their tags with it")
    items: list[SealedItem] = Field(max_length=MAX_ITEMS)
    complete: bool = Field(default=False, description="This request ends the round's publication")


class SealedRoundPublic(BaseModel):
    """A round a hospital published sealed, with what a patient needs to derive their tag and check a proof."""

    study_id: int
    round: int
    hospital: Address
    hospital_public_key: PublicKey
    cohort_root: Hash32
    cohort_count: int
    block: int = Field(description="Block of the hospital's anchored contribution")
    contribution_tx: Hash32
    complete: bool = Field(description="The hospital sent every envelope of the round")
    purpose_words: str
    researcher: Address


class SealedRoundsPublic(BaseModel):
    """Every round published sealed, and the chain context each tag is derived for."""

    chain_id: int
    study_registry: Address
    check: str = Field(description="The view that verifies a proof: StudyRegistry.inCohort(studyId, round, "
                                   "hospital, leaf, proof)")
    rounds: list[SealedRoundPublic]


class SealedLookup(BaseModel):
    """The tags a patient derived; nothing in the request names the patient."""

    tags: list[Tag] = Field(min_length=1, max_length=MAX_TAGS)


class SealedFound(BaseModel):
    """An envelope stored under one of the tags asked for."""

    tag: Tag
    ciphertext: str


class SealedLookupPublic(BaseModel):
    """The envelopes found; a tag asked for and not listed has none."""

    found: list[SealedFound]
