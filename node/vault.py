"""The pseudonym map: local patient id <-> pseudonym, date shift and address, sealed at rest.

Each patient's entry is sealed with AES-256-GCM under the node's vault key (bound to its
pseudonym as associated data, so entries cannot be swapped). The catalog indexes patients by
an HMAC of the local id, so a local id can be looked up without being stored in clear.

Pseudonym and date shift are derived from the local id with keyed HMACs (the node's lookup
secret, which never leaves it): without the secret they reveal nothing, and with it every
ingest worker computes the same values without asking the catalog, so files can be
de-identified in parallel.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select
from sqlalchemy.orm import Session

from node.catalog import Patient
from node.errors import KeyStoreError
from node.keys import NodeSecrets

#: Date shifts are drawn from this range of days (always into the past, never zero).
SHIFT_RANGE = (-3650, -30)


def derive_pseudonym(lookup_secret: bytes, local_id: str) -> tuple[str, int]:
    """The pseudonym and date shift (days) of ``local_id`` on the node holding ``lookup_secret``."""
    mac = hmac.new(lookup_secret, b"pseudonym\0" + local_id.encode("utf-8"), hashlib.sha256).digest()
    span = SHIFT_RANGE[1] - SHIFT_RANGE[0] + 1
    shift = SHIFT_RANGE[0] + int.from_bytes(mac[8:16], "big") % span
    return "MTP-" + mac[:6].hex().upper(), shift


@dataclass(frozen=True)
class VaultEntry:
    """What the vault knows of one patient."""

    pseudonym: str
    local_id: str
    date_shift_days: int
    address: str | None


class Vault:
    """Seal, unseal and look up pseudonym-map entries."""

    def __init__(self, secrets_: NodeSecrets) -> None:
        self._aead = AESGCM(secrets_.vault_key)
        self._lookup_key = secrets_.lookup_secret

    def lookup(self, local_id: str) -> str:
        """The catalog index of ``local_id`` (HMAC-SHA256, hex)."""
        return hmac.new(self._lookup_key, local_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def seal(self, entry: VaultEntry) -> bytes:
        """Encrypt ``entry``; the pseudonym is bound as associated data."""
        nonce = os.urandom(12)
        plain = json.dumps({"local_id": entry.local_id, "shift": entry.date_shift_days, "address": entry.address})
        return nonce + self._aead.encrypt(nonce, plain.encode(), entry.pseudonym.encode())

    def unseal(self, pseudonym: str, sealed: bytes) -> VaultEntry:
        """Decrypt an entry; raise KeyStoreError if it was tampered with or moved."""
        try:
            plain = json.loads(self._aead.decrypt(sealed[:12], sealed[12:], pseudonym.encode()))
        except InvalidTag as exc:
            raise KeyStoreError(f"pseudonym-map entry of {pseudonym} fails authentication") from exc
        return VaultEntry(pseudonym, plain["local_id"], int(plain["shift"]), plain["address"])

    def get_or_create(self, session: Session, local_id: str) -> VaultEntry:
        """The entry of ``local_id``, creating a pseudonym and a date shift the first time."""
        key = self.lookup(local_id)
        patient = session.scalar(select(Patient).where(Patient.lookup == key))
        if patient is not None:
            return self.unseal(patient.pseudonym, patient.sealed)
        pseudonym, shift = derive_pseudonym(self._lookup_key, local_id)
        entry = VaultEntry(pseudonym=pseudonym, local_id=local_id, date_shift_days=shift, address=None)
        session.add(Patient(pseudonym=entry.pseudonym, lookup=key, sealed=self.seal(entry)))
        session.flush()
        return entry

    def find(self, session: Session, local_id: str) -> VaultEntry | None:
        """The entry of ``local_id`` if the node knows this patient."""
        patient = session.scalar(select(Patient).where(Patient.lookup == self.lookup(local_id)))
        return None if patient is None else self.unseal(patient.pseudonym, patient.sealed)
