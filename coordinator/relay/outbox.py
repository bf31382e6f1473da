"""The relay's outbox in the database: accepting a signed consent, and reading where it is.

A signed consent is stored (state ``pending``) before the API answers, so that nothing a
patient signed is lost if the service stops; :mod:`coordinator.relay.worker` takes it from
there. The same signature submitted twice is the same item.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from contracts.datause import Kind, Purpose, Scope
from contracts.eip712 import SignedConsent
from coordinator.models.tables import RelayBatch, RelayItem, RelayKind, RelayState, utcnow


def signature_hex(signed: SignedConsent) -> str:
    """The signature as 0x + r + s + v (65 bytes), the form wallets return."""
    return "0x" + signed.r.hex() + signed.s.hex() + f"{signed.v:02x}"


def accept_many(db: Session, group: Sequence[SignedConsent]) -> dict[str, RelayItem]:
    """Store every consent of ``group`` for relaying in one statement; each signature's item, earlier ones kept.

    A signature already stored (sent twice, or by concurrent requests) keeps its first item.
    """
    now = utcnow()
    rows = [{
        "id": secrets.token_hex(16), "patient": signed.patient,
        "kind": RelayKind.REVOKE if signed.kinds is None else RelayKind.GRANT,
        "hospital": signed.scope.hospital, "purpose": int(signed.scope.purpose), "disease": signed.scope.disease,
        "study_id": signed.scope.study_id, "kinds": None if signed.kinds is None else int(signed.kinds),
        "expires_at": None if signed.expires_at is None else str(signed.expires_at), "nonce": signed.nonce,
        "deadline": signed.deadline, "signature": signature_hex(signed), "state": RelayState.PENDING,
        "created_at": now, "updated_at": now,
    } for signed in group]
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    # One statement run for every row (executemany): its compiled form is cached, unlike a multi-row VALUES.
    db.execute(insert(RelayItem).on_conflict_do_nothing(index_elements=["signature"]), rows)
    signatures = [row["signature"] for row in rows]
    return {item.signature: item for item in db.scalars(select(RelayItem).where(RelayItem.signature.in_(signatures)))}


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
