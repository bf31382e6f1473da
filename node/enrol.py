"""Enrolment: link a local patient to an address they control.

The node issues a challenge naming the hospital, a random nonce and an expiry; the patient
signs it with their key (EIP-191 ``personal_sign``, what every wallet offers); the node recovers
the signer and links the address only if it matches, the challenge is one issued for that
patient, and it has not expired or been used. The public key the signature recovers is kept
too (``patient_keys``): sealed cohort proofs are encrypted to it. So are the signed text and the
signature (``enrolments``): each round's cohort manifest carries them, so that an auditor can
check that the address's holder linked it to this hospital's records. That is why the text
says nothing about the patient: which of the hospital's patients signed it stays in the
catalog (the nonce), not in the text.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import select, update

from contracts.sealing import SealingError, address_of, recover_public_key
from node.catalog import Challenge, Enrolment, Patient, PatientKey, utcnow
from node.errors import EnrolmentError
from node.node import Node
from node.vault import VaultEntry

CHALLENGE_TTL = _dt.timedelta(hours=24)


@dataclass(frozen=True)
class IssuedChallenge:
    """The text a patient signs, and until when it is valid."""

    text: str
    expires_at: _dt.datetime


def issue_challenge(node: Node, local_patient_id: str) -> IssuedChallenge:
    """Issue a fresh challenge for the patient known locally as ``local_patient_id``.

    Raises:
        EnrolmentError: the node holds no data of this patient.
    """
    with node.sessions() as session:
        entry = node.vault.find(session, local_patient_id)
        if entry is None:
            raise EnrolmentError(f"no patient {local_patient_id!r} on this node; ingest their data first")
        nonce = secrets.token_hex(16)
        expires = utcnow() + CHALLENGE_TTL
        text = (
            "MeTAI exchange: link my key to my records\n"
            f"Hospital: {node.info.hospital_name} ({node.address})\n"
            f"Nonce: {nonce}\n"
            f"Expires: {expires.isoformat(timespec='seconds')}Z"
        )
        session.add(Challenge(nonce=nonce, patient_pseudonym=entry.pseudonym, text=text, expires_at=expires))
        session.commit()
    return IssuedChallenge(text, expires)


def _signer(text: str, signature: bytes) -> str | None:
    """The address that signed ``text`` with ``signature`` (EIP-191), or None if it recovers to none."""
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=signature))
    # eth-keys refuses r or s out of range with BadSignature, which is no ValueError.
    except (ValueError, TypeError, BadSignature):
        return None


def _public_key(text: str, signature: bytes, address: str) -> bytes:
    """The public key of ``address`` recovered from its signature over ``text`` (64 bytes, x || y)."""
    try:
        public_key = recover_public_key(text, signature)
    except SealingError as exc:
        raise EnrolmentError(f"the signature yields no public key ({exc})") from None
    if address_of(public_key) != address:  # the signer was checked already: this would be a bug in recovery
        raise EnrolmentError(f"the public key recovered from the signature is of {address_of(public_key)}, "
                             f"not {address}; nothing was enrolled")
    return public_key


def enrol(node: Node, local_patient_id: str, address: str, signature: str) -> str:
    """Link ``address`` to the patient if ``signature`` is theirs over an open challenge.

    Returns:
        The patient's pseudonym.

    Raises:
        EnrolmentError: unknown patient, malformed address or signature, no challenge issued
            here, a signature by another key or over another text (such as another hospital's
            challenge), a challenge already used (a replay) or expired, or one an earlier
            version issued naming the patient's pseudonym.
    """
    if not is_address(address):
        raise EnrolmentError(f"{address!r} is not an Ethereum address (0x followed by 40 hex digits)")
    address = to_checksum_address(address)
    try:
        sig = bytes.fromhex(signature.removeprefix("0x"))
    except ValueError as exc:
        raise EnrolmentError("the signature must be hex (0x followed by 130 hex digits)") from exc
    if len(sig) != 65:
        raise EnrolmentError(f"the signature has {len(sig)} bytes, expected 65")
    with node.sessions() as session:
        entry = node.vault.find(session, local_patient_id)
        if entry is None:
            raise EnrolmentError(f"no patient {local_patient_id!r} on this node")
        issued = session.scalars(select(Challenge).where(Challenge.patient_pseudonym == entry.pseudonym)).all()
        if not issued:
            raise EnrolmentError(
                f"no challenge was issued for {local_patient_id!r} on this node ({node.info.hospital_name}); "
                "a challenge from another hospital does not count: issue one with `metai-node challenge`"
            )
        now = utcnow()
        # Every challenge ever issued to this patient is tried, used and expired ones too, so that
        # a refusal can say which rule the signature broke rather than only that it failed.
        signers = {c.nonce: _signer(c.text, sig) for c in issued}
        signed = next((c for c in issued if signers[c.nonce] == address), None)
        if signed is None:
            open_now = [c for c in issued if not c.used and c.expires_at > now]
            if not open_now:
                raise EnrolmentError(
                    f"no open challenge for {local_patient_id!r} (each one issued was used or has expired); "
                    "issue one with `metai-node challenge`"
                )
            seen = ", ".join(sorted({signers[c.nonce] or "nobody (malformed signature)" for c in open_now}))
            raise EnrolmentError(
                f"the signature does not prove control of {address}: it is over none of the challenges "
                f"{node.info.hospital_name} ({node.address}) issued for {local_patient_id!r}; over the open "
                f"challenge(s) it was made by {seen}, so it is by another key or over another text (another "
                f"hospital's challenge, an edited one); have the patient sign this hospital's open challenge "
                f"with the key of {address}"
            )
        if signed.used:
            raise EnrolmentError(
                f"the challenge for {local_patient_id!r} was already used (nonce {signed.nonce}); a signed "
                "challenge enrols once, so this is a replay: issue a new one with `metai-node challenge`"
            )
        if signed.expires_at <= now:
            raise EnrolmentError(
                f"the challenge for {local_patient_id!r} expired at {signed.expires_at.isoformat(timespec='seconds')}Z "
                f"(nonce {signed.nonce}; a challenge is valid {CHALLENGE_TTL.total_seconds() / 3600:g} h): issue a "
                "new one with `metai-node challenge`"
            )
        if entry.pseudonym in signed.text:
            raise EnrolmentError(
                f"the challenge for {local_patient_id!r} (nonce {signed.nonce}) was issued by an earlier version of "
                "the node and names the patient's pseudonym, which the signed text would carry out of the hospital "
                "in every cohort manifest: issue a new one with `metai-node challenge`"
            )
        # Consumed by a conditional update, so that of two enrolments racing with one signature
        # only the one whose update changed the row goes on.
        consumed = session.scalars(
            update(Challenge).where(Challenge.nonce == signed.nonce, Challenge.used.is_(False))
            .values(used=True).returning(Challenge.nonce)
        ).all()
        if consumed != [signed.nonce]:
            raise EnrolmentError(
                f"the challenge for {local_patient_id!r} was already used (nonce {signed.nonce}) by an enrolment "
                "that ran at the same time: issue a new one with `metai-node challenge`"
            )
        public_key = _public_key(signed.text, sig, address)
        patient = session.get(Patient, entry.pseudonym)
        assert patient is not None  # the vault found it
        session.merge(PatientKey(address=address, pseudonym=entry.pseudonym, public_key=public_key,
                                 recorded_at=utcnow()))
        session.merge(Enrolment(address=address, pseudonym=entry.pseudonym, challenge=signed.text,
                                signature="0x" + sig.hex(), enrolled_at=utcnow()))
        patient.address = address
        patient.enrolled_at = utcnow()
        patient.sealed = node.vault.seal(VaultEntry(entry.pseudonym, entry.local_id, entry.date_shift_days, address))
        session.commit()
        return entry.pseudonym
