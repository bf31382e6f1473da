"""EIP-712 typed data for consent signed by patients and relayed by anyone.

A patient's wallet (or the portal, with the patient's key) signs a ``ConsentGrant`` or
``ConsentRevoke``; the coordinator relays it with ``grantBySig`` / ``revokeBySig``. The
signature binds the chain, the registry's address, the patient's current nonce and a deadline,
so it cannot be replayed elsewhere, twice, or late.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_keys.datatypes import Signature
from eth_keys.exceptions import BadSignature
from eth_utils.crypto import keccak
from eth_utils.exceptions import ValidationError

from contracts.datause import Kind, Scope

DOMAIN_NAME = "MeTAI ConsentRegistry"
DOMAIN_VERSION = "1"

_SCOPE_FIELDS = [
    {"name": "patient", "type": "address"},
    {"name": "hospital", "type": "address"},
    {"name": "purpose", "type": "uint8"},
    {"name": "disease", "type": "uint32"},
    {"name": "studyId", "type": "uint256"},
]
_TAIL = [{"name": "nonce", "type": "uint256"}, {"name": "deadline", "type": "uint256"}]
TYPES: dict[str, list[dict[str, str]]] = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "ConsentGrant": [
        *_SCOPE_FIELDS,
        {"name": "kinds", "type": "uint8"},
        {"name": "expiresAt", "type": "uint64"},
        *_TAIL,
    ],
    "ConsentRevoke": [*_SCOPE_FIELDS, *_TAIL],
}


@dataclass(frozen=True)
class SignedConsent:
    """A patient's signed grant (``kinds`` and ``expires_at`` set) or revoke (both None)."""

    patient: str
    scope: Scope
    nonce: int
    deadline: int
    v: int
    r: bytes
    s: bytes
    kinds: Kind | None = None
    expires_at: int | None = None

    def __post_init__(self) -> None:
        if (self.kinds is None) != (self.expires_at is None):
            raise ValueError(
                "a signed grant carries both kinds and expires_at and a signed revocation neither; got "
                f"kinds={self.kinds!r} and expires_at={self.expires_at!r}, which the relay could not tell apart"
            )


def domain(chain_id: int, registry: str) -> dict[str, Any]:
    """The EIP-712 domain of the ConsentRegistry at ``registry`` on ``chain_id``."""
    return {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": chain_id,
        "verifyingContract": registry,
    }


def _message(patient: str, scope: Scope, nonce: int, deadline: int) -> dict[str, Any]:
    return {
        "patient": patient,
        "hospital": scope.hospital,
        "purpose": int(scope.purpose),
        "disease": scope.disease,
        "studyId": scope.study_id,
        "nonce": nonce,
        "deadline": deadline,
    }


def grant_typed_data(
    chain_id: int, registry: str, patient: str, scope: Scope, kinds: Kind, expires_at: int,
    nonce: int, deadline: int,
) -> dict[str, Any]:
    """The full EIP-712 ``ConsentGrant`` message, as a wallet's eth_signTypedData_v4 takes it."""
    message = _message(patient, scope, nonce, deadline)
    message.update(kinds=int(kinds), expiresAt=expires_at)
    return {
        "types": {k: TYPES[k] for k in ("EIP712Domain", "ConsentGrant")},
        "primaryType": "ConsentGrant",
        "domain": domain(chain_id, registry),
        "message": message,
    }


def revoke_typed_data(
    chain_id: int, registry: str, patient: str, scope: Scope, nonce: int, deadline: int
) -> dict[str, Any]:
    """The full EIP-712 ``ConsentRevoke`` message."""
    return {
        "types": {k: TYPES[k] for k in ("EIP712Domain", "ConsentRevoke")},
        "primaryType": "ConsentRevoke",
        "domain": domain(chain_id, registry),
        "message": _message(patient, scope, nonce, deadline),
    }


def _sign(account: LocalAccount, typed: dict[str, Any]) -> tuple[int, bytes, bytes]:
    signed = account.sign_message(encode_typed_data(full_message=typed))
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def sign_grant(
    account: LocalAccount, *, chain_id: int, registry: str, scope: Scope, kinds: Kind,
    expires_at: int, nonce: int, deadline: int,
) -> SignedConsent:
    """Sign a consent grant with the patient's ``account``."""
    typed = grant_typed_data(chain_id, registry, account.address, scope, kinds, expires_at, nonce, deadline)
    v, r, s = _sign(account, typed)
    return SignedConsent(account.address, scope, nonce, deadline, v, r, s, kinds, expires_at)


def sign_revoke(
    account: LocalAccount, *, chain_id: int, registry: str, scope: Scope, nonce: int, deadline: int
) -> SignedConsent:
    """Sign a consent revocation with the patient's ``account``."""
    typed = revoke_typed_data(chain_id, registry, account.address, scope, nonce, deadline)
    v, r, s = _sign(account, typed)
    return SignedConsent(account.address, scope, nonce, deadline, v, r, s)


def _type_string(primary: str) -> str:
    return f"{primary}(" + ",".join(f"{f['type']} {f['name']}" for f in TYPES[primary]) + ")"


_DOMAIN_TYPEHASH = keccak(text=_type_string("EIP712Domain"))
_TYPEHASHES = {primary: keccak(text=_type_string(primary)) for primary in ("ConsentGrant", "ConsentRevoke")}


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


@lru_cache(maxsize=64)
def domain_separator(chain_id: int, registry: str) -> bytes:
    """The EIP-712 domain separator of the ConsentRegistry at ``registry`` on ``chain_id``."""
    return keccak(_DOMAIN_TYPEHASH + keccak(text=DOMAIN_NAME) + keccak(text=DOMAIN_VERSION) + _word(chain_id)
                  + _address_word(registry))


def consent_digest(chain_id: int, registry: str, signed: SignedConsent) -> bytes:
    """The 32-byte EIP-712 digest a patient signs for ``signed`` (its v, r, s aside).

    Every field of both messages is a static type, so the struct's encoding is its fields' 32-byte
    words after the type hash; computed here directly, it costs a small part of eth_account's
    general typed-data encoder, which the coordinator would otherwise run for every consent it takes.
    """
    words = [_address_word(signed.patient), _address_word(signed.scope.hospital), _word(int(signed.scope.purpose)),
             _word(signed.scope.disease), _word(signed.scope.study_id)]
    if signed.kinds is not None and signed.expires_at is not None:
        primary = "ConsentGrant"
        words += [_word(int(signed.kinds)), _word(signed.expires_at)]
    else:
        primary = "ConsentRevoke"
    words += [_word(signed.nonce), _word(signed.deadline)]
    struct = keccak(_TYPEHASHES[primary] + b"".join(words))
    return keccak(b"\x19\x01" + domain_separator(chain_id, registry) + struct)


def signer_of(chain_id: int, registry: str, signed: SignedConsent) -> str:
    """The address whose key made ``signed``'s signature (to check it is the patient's before relaying).

    Raises:
        ValueError: the signature is malformed (v not 27 or 28, r or s out of range).
    """
    try:
        signature = Signature(vrs=(signed.v - 27, int.from_bytes(signed.r, "big"),
                                        int.from_bytes(signed.s, "big")))
        public_key = signature.recover_public_key_from_msg_hash(consent_digest(chain_id, registry, signed))
    except (ValidationError, BadSignature) as exc:
        raise ValueError(f"malformed signature: {exc}") from exc
    return str(public_key.to_checksum_address())
