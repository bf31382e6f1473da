"""Enrolment: link a local patient to an address they control.

The node issues a challenge naming the hospital, the patient's pseudonym, a random nonce and an
expiry; the patient signs it with their key (EIP-191 ``personal_sign``, what every wallet
offers); the node recovers the signer and links the address only if it matches, the challenge
is the open one for that patient, and it has not expired or been used.
"""

from __future__ import annotations

import datetime as _dt
import secrets
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import is_address, to_checksum_address
from sqlalchemy import select

from node.catalog import Challenge, Patient, utcnow
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
            f"Patient reference: {entry.pseudonym}\n"
            f"Nonce: {nonce}\n"
            f"Expires: {expires.isoformat(timespec='seconds')}Z"
        )
        session.add(Challenge(nonce=nonce, patient_pseudonym=entry.pseudonym, text=text, expires_at=expires))
        session.commit()
    return IssuedChallenge(text, expires)


def enrol(node: Node, local_patient_id: str, address: str, signature: str) -> str:
    """Link ``address`` to the patient if ``signature`` is theirs over an open challenge.

    Returns:
        The patient's pseudonym.

    Raises:
        EnrolmentError: unknown patient, malformed address or signature, no open challenge,
            or a signature by another key or over another text.
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
        open_challenges = session.scalars(
            select(Challenge).where(Challenge.patient_pseudonym == entry.pseudonym, Challenge.used.is_(False),
                                    Challenge.expires_at > utcnow())
        ).all()
        if not open_challenges:
            raise EnrolmentError(f"no open challenge for {local_patient_id!r}; issue one with `metai-node challenge`")
        signers = {}
        for challenge in open_challenges:
            try:
                signers[challenge.nonce] = Account.recover_message(encode_defunct(text=challenge.text), signature=sig)
            except (ValueError, TypeError):
                continue
        matched = [c for c in open_challenges if signers.get(c.nonce) == address]
        if not matched:
            seen = ", ".join(sorted(set(signers.values()))) or "nobody (malformed signature)"
            raise EnrolmentError(
                f"the signature does not prove control of {address}: over the open challenge(s) it was made by {seen}"
            )
        matched[0].used = True
        patient = session.get(Patient, entry.pseudonym)
        assert patient is not None  # the vault found it
        patient.address = address
        patient.enrolled_at = utcnow()
        patient.sealed = node.vault.seal(VaultEntry(entry.pseudonym, entry.local_id, entry.date_shift_days, address))
        session.commit()
        return entry.pseudonym
