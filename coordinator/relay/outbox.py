"""The relay's outbox in the database: accepting a signed consent, and reading where it is.

A signed consent is stored (state ``pending``) before the API answers, so that nothing a
patient signed is lost if the service stops; :mod:`coordinator.relay.worker` takes it from
there. The same signature submitted twice is the same item.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.datause import Kind, Purpose, Scope
from contracts.eip712 import SignedConsent
from coordinator.models.tables import RelayBatch, RelayItem, RelayKind, RelayState, utcnow


def signature_hex(signed: SignedConsent) -> str:
    """The signature as 0x + r + s + v (65 bytes), the form wallets return."""
    return "0x" + signed.r.hex() + signed.s.hex() + f"{signed.v:02x}"


def accept(db: Session, signed: SignedConsent) -> RelayItem:
    """Store ``signed`` for relaying (state pending); an identical signature returns its earlier item."""
    signature = signature_hex(signed)
    existing = db.scalars(select(RelayItem).where(RelayItem.signature == signature)).first()
    if existing is not None:
        return existing
    now = utcnow()
    item = RelayItem(
        id=secrets.token_hex(16), patient=signed.patient,
        kind=RelayKind.REVOKE if signed.kinds is None else RelayKind.GRANT,
        hospital=signed.scope.hospital, purpose=int(signed.scope.purpose), disease=signed.scope.disease,
        study_id=signed.scope.study_id, kinds=None if signed.kinds is None else int(signed.kinds),
        expires_at=None if signed.expires_at is None else str(signed.expires_at), nonce=signed.nonce,
        deadline=signed.deadline, signature=signature,
        state=RelayState.PENDING, created_at=now, updated_at=now,
    )
    try:
        with db.begin_nested():
            db.add(item)
    except IntegrityError:  # the same signature, accepted by a concurrent request a moment ago
        return db.scalars(select(RelayItem).where(RelayItem.signature == signature)).one()
    return item


def item_of(db: Session, item_id: str) -> RelayItem | None:
    """The relay item ``item_id``, if any."""
    return db.get(RelayItem, item_id)


def outstanding_nonces(db: Session, patient: str) -> list[int]:
    """Nonces of ``patient``'s signatures accepted but not yet mined or refused."""
    return list(db.scalars(select(RelayItem.nonce).where(
        RelayItem.patient == patient, RelayItem.state.in_([RelayState.PENDING, RelayState.SENT]))))


def depth(db: Session) -> int:
    """Signed consents waiting in the outbox (pending or in a sent transaction)."""
    return int(db.scalar(select(func.count()).select_from(RelayItem).where(
        RelayItem.state.in_([RelayState.PENDING, RelayState.SENT]))) or 0)


def signed_consent(item: RelayItem) -> SignedConsent:
    """The signed consent an outbox item holds, as the chain client sends it."""
    raw = bytes.fromhex(item.signature[2:])
    scope = Scope(hospital=item.hospital, purpose=Purpose(item.purpose), disease=item.disease, study_id=item.study_id)
    kinds = None if item.kinds is None else Kind(item.kinds)
    expires = None if item.expires_at is None else int(item.expires_at)
    return SignedConsent(item.patient, scope, item.nonce, item.deadline, raw[64], raw[:32], raw[32:64], kinds, expires)


@dataclass(frozen=True)
class RelayOutcome:
    """What happened to one item of a mined batch."""

    item_id: str
    mined: bool
    event: str | None = None
    consent_id: str | None = None
    error: str | None = None
    error_detail: str | None = None


def sent_batches(db: Session) -> list[RelayBatch]:
    """Batches signed and stored but not known to be mined or dropped (after a restart: to finish)."""
    return list(db.scalars(select(RelayBatch).where(RelayBatch.state == "sent").order_by(RelayBatch.id)))
