"""Sealed cohort proofs: a hospital encrypts each patient's proofs to the patient's own key.

In a deployment whose coordinator must not learn which addresses took part in which rounds,
the hospital node seals, per round, one envelope per patient (their records in the cohort and
each record's Merkle proof) to the patient's secp256k1 public key, recovered from their
enrolment signature. The coordinator stores envelopes under a **tag** it cannot link to an
address; the patient derives the same tag and opens the envelope with their private key.

Both the node and the coordinator import this module; the portal's script follows the same
specification (docs/coordinator.md, "The sealed envelope"), so every constant here is part of
that specification:

- shared secret: the x coordinate (32 bytes) of secp256k1 ECDH;
- tag (32 bytes): ``HMAC-SHA256(HKDF-SHA256(x_hp, salt="", info=TAG_INFO, 32 bytes), context)``
  where ``x_hp`` is the hospital key's ECDH with the patient's key and ``context`` is
  ``"{chain_id}:{study_registry, lower case}:{study_id}:{round}"`` in UTF-8;
- envelope: ``version (1) || ephemeral public key, compressed (33) || nonce (12) ||
  AES-256-GCM(padded plaintext) with its 16-byte tag``; the AES key is
  ``HKDF-SHA256(x_ep, salt=envelope[0:34], info=KEY_INFO, 32 bytes)`` where ``x_ep`` is the
  ephemeral key's ECDH with the patient's key, and the associated data is the 32-byte tag;
- padded plaintext: the JSON's length (4 bytes, big-endian) || the JSON (UTF-8) || zero bytes,
  to ``MIN_BUCKET * 2**k`` bytes, the smallest such size that holds it (at most ``MAX_PADDED``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import coincurve
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account.messages import defunct_hash_message
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from contracts.errors import ChainError

__all__ = ["FORMAT", "KEY_INFO", "MAX_PADDED", "MIN_BUCKET", "TAG_INFO", "VERSION", "SealedContent", "SealedRecord",
           "SealingError", "address_of", "open_envelope", "padded_size", "public_key_of", "recover_public_key",
           "seal", "sealed_tag"]

VERSION = 1
FORMAT = "metai-sealed-proof"
TAG_INFO = b"metai sealed-proof tag v1"
KEY_INFO = b"metai sealed-proof key v1"
#: The smallest padded plaintext, in bytes: about four records with proofs of a cohort of a thousand.
MIN_BUCKET = 4096
#: The largest padded plaintext, in bytes (about a thousand records of one patient in one round).
MAX_PADDED = 1 << 20
_HEADER = 1 + 33  # version, ephemeral public key
_NONCE = 12
_GCM_TAG = 16
#: Bytes an envelope adds to its padded plaintext.
OVERHEAD = _HEADER + _NONCE + _GCM_TAG


class SealingError(ChainError, ValueError):
    """A key, tag or envelope is malformed, or an envelope does not open with this key and tag."""


@dataclass(frozen=True)
class SealedRecord:
    """One of the patient's records in a round's cohort, with its Merkle proof (0x-hex sibling hashes)."""

    record_id: str
    kind: int
    proof: tuple[str, ...]


@dataclass(frozen=True)
class SealedContent:
    """What one envelope holds: a patient's records in one round of one study at one hospital."""

    study_id: int
    round: int
    hospital: str
    cohort_root: str
    #: In order of record id and kind (sorted when made), so equal contents compare equal.
    records: tuple[SealedRecord, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "records", tuple(sorted(self.records, key=lambda r: (r.record_id, r.kind))))

    def to_json(self) -> bytes:
        """The canonical JSON (sorted keys, no spaces, records in order of record id and kind), UTF-8."""
        records = self.records
        data = {"format": FORMAT, "version": VERSION, "study_id": self.study_id, "round": self.round,
                "hospital": to_checksum_address(self.hospital), "cohort_root": self.cohort_root.lower(),
                "records": [{"record_id": r.record_id, "kind": r.kind, "proof": list(r.proof)} for r in records]}
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, text: bytes) -> SealedContent:
        """Read the JSON of :meth:`to_json`.

        Raises:
            SealingError: not that format and version, or a field missing or of another type.
        """
        try:
            data = json.loads(text.decode("utf-8"))
            if data.get("format") != FORMAT or data.get("version") != VERSION:
                raise SealingError(f"the envelope holds {data.get('format')!r} version {data.get('version')!r}, "
                                   f"expected {FORMAT!r} version {VERSION}")
            records = tuple(SealedRecord(str(r["record_id"]), int(r["kind"]), tuple(str(p) for p in r["proof"]))
                            for r in data["records"])
            return cls(int(data["study_id"]), int(data["round"]), str(data["hospital"]), str(data["cohort_root"]),
                       records)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, SealingError):
                raise
            raise SealingError(f"the envelope's content is malformed ({exc!r})") from None


def _point(public_key: bytes) -> coincurve.PublicKey:
    """A secp256k1 point from 64 raw bytes (x || y, as Ethereum keeps them) or SEC1 (33 or 65 bytes)."""
    raw = b"\x04" + public_key if len(public_key) == 64 else public_key
    try:
        return coincurve.PublicKey(raw)
    except (ValueError, TypeError) as exc:
        raise SealingError(f"{len(public_key)} bytes are not a secp256k1 public key "
                           "(64 raw bytes x || y, or SEC1 with 33 or 65 bytes)") from exc


def public_key_of(private_key: bytes) -> bytes:
    """The 64-byte raw public key (x || y) of a 32-byte private key."""
    return coincurve.PrivateKey(private_key).public_key.format(compressed=False)[1:]


def address_of(public_key: bytes) -> str:
    """The checksummed Ethereum address of a public key (the last 20 bytes of keccak256(x || y))."""
    raw = _point(public_key).format(compressed=False)[1:]
    return to_checksum_address(keccak(raw)[12:])


def _shared_x(private_key: bytes, public_key: bytes) -> bytes:
    """The x coordinate of ``private_key`` times ``public_key`` (what ethers' computeSharedSecret gives at [1:33])."""
    return _point(public_key).multiply(private_key).format(compressed=True)[1:]


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def sealed_tag(private_key: bytes, public_key: bytes, *, chain_id: int, study_registry: str, study_id: int,
               round_: int) -> bytes:
    """The 32-byte tag of one patient's envelope in one round at one hospital.

    The hospital calls it with its own private key and the patient's public key, the patient
    with theirs and the hospital's: both get the same tag, which nobody without one of the two
    private keys can link to either address.
    """
    key = _hkdf(_shared_x(private_key, public_key), None, TAG_INFO)
    context = f"{chain_id}:{study_registry.lower()}:{study_id}:{round_}".encode()
    return hmac.new(key, context, hashlib.sha256).digest()


def padded_size(length: int) -> int:
    """The padded plaintext size for a JSON of ``length`` bytes (4 bytes of length + the JSON + zeros).

    Raises:
        SealingError: it would exceed ``MAX_PADDED``.
    """
    size = MIN_BUCKET
    while size < length + 4:
        size *= 2
    if size > MAX_PADDED:
        raise SealingError(f"the envelope's content has {length} bytes; at most {MAX_PADDED - 4} fit in one envelope")
    return size


def seal(public_key: bytes, tag: bytes, content: SealedContent) -> bytes:
    """Encrypt ``content`` to ``public_key`` (the patient's) with ``tag`` as associated data; the envelope's bytes."""
    if len(tag) != 32:
        raise SealingError(f"a tag has 32 bytes, not {len(tag)}")
    recipient = _point(public_key)
    body = content.to_json()
    padded = len(body).to_bytes(4, "big") + body
    padded += bytes(padded_size(len(body)) - len(padded))
    ephemeral = coincurve.PrivateKey()
    header = bytes([VERSION]) + ephemeral.public_key.format(compressed=True)
    key = _hkdf(_shared_x(ephemeral.secret, recipient.format()), header, KEY_INFO)
    nonce = os.urandom(_NONCE)
    return header + nonce + AESGCM(key).encrypt(nonce, padded, tag)


def open_envelope(private_key: bytes, tag: bytes, envelope: bytes) -> SealedContent:
    """Decrypt an envelope sealed to the public key of ``private_key`` under ``tag``.

    Raises:
        SealingError: another version, a malformed envelope, another key or tag, or any byte changed.
    """
    if len(envelope) < OVERHEAD + 4:
        raise SealingError(f"an envelope has at least {OVERHEAD + 4} bytes, this one {len(envelope)}")
    if envelope[0] != VERSION:
        raise SealingError(f"envelope version {envelope[0]}; this code opens version {VERSION}")
    header, nonce, sealed = envelope[:_HEADER], envelope[_HEADER:_HEADER + _NONCE], envelope[_HEADER + _NONCE:]
    key = _hkdf(_shared_x(private_key, header[1:]), header, KEY_INFO)
    try:
        padded = AESGCM(key).decrypt(nonce, sealed, tag)
    except InvalidTag:
        raise SealingError("the envelope does not open with this key and tag (sealed to another key, "
                           "under another tag, or altered)") from None
    length = int.from_bytes(padded[:4], "big")
    if length > len(padded) - 4 or any(padded[4 + length:]):
        raise SealingError("the envelope's padding is malformed")
    return SealedContent.from_json(padded[4:4 + length])


def recover_public_key(text: str, signature: bytes | Sequence[int]) -> bytes:
    """The 64-byte public key that made ``signature`` (EIP-191 ``personal_sign``, 65 bytes r || s || v) over ``text``.

    Raises:
        SealingError: the signature is malformed or recovers no key.
    """
    sig = bytes(signature)
    if len(sig) != 65:
        raise SealingError(f"a signature has 65 bytes, not {len(sig)}")
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    try:
        key = coincurve.PublicKey.from_signature_and_message(sig[:64] + bytes([v]), defunct_hash_message(text=text),
                                                             hasher=None)
    except (ValueError, TypeError) as exc:
        raise SealingError(f"the signature recovers no public key ({exc})") from None
    return key.format(compressed=False)[1:]
