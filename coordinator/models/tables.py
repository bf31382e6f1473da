"""The coordinator service's tables (SQLAlchemy 2): sign-in nonces, sessions, the consent relay's outbox, cohort
proofs (plain or sealed), the launches of studies' runs.

Nothing here is personal: addresses are the pseudonymous ones patients chose to sign with,
and a relayed consent carries only codes, numbers and the patient's signature, all of which
end up public on chain anyway. Session tokens are stored only as their SHA-256.

The schema is created and changed only by the Alembic migrations in
``coordinator/core/migrations``; a test keeps them equal to these classes.
"""

from __future__ import annotations

import datetime as _dt
import enum

from sqlalchemy import BigInteger, ForeignKey, Index, LargeBinary, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ADDRESS = 42  # 0x + 40 hex digits, checksummed
HASH = 66  # 0x + 64 hex digits


def utcnow() -> _dt.datetime:
    """The current time in UTC, naive (both SQLite and PostgreSQL columns here hold UTC)."""
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    # Named constraints, so that migrations can name what they alter on every database.
    metadata = MetaData(naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    })


class SignInNonce(Base):
    """A nonce the service put in a sign-in message; usable once, until ``expires_at``."""

    __tablename__ = "sign_in_nonces"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    issued_at: Mapped[_dt.datetime]
    expires_at: Mapped[_dt.datetime] = mapped_column(index=True)
    used_at: Mapped[_dt.datetime | None]


class SignInSession(Base):
    """A signed-in account's session (portal cookie or script bearer token: the same token)."""

    __tablename__ = "sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_sha256: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(ADDRESS), index=True)
    created_at: Mapped[_dt.datetime]
    expires_at: Mapped[_dt.datetime] = mapped_column(index=True)
    ended_at: Mapped[_dt.datetime | None]


class RelayKind(enum.StrEnum):
    """What a relayed signature does."""

    GRANT = "grant"
    REVOKE = "revoke"


class RelayState(enum.StrEnum):
    """Where a signed consent is in the relay: accepted, in a sent transaction, on chain, or refused by it."""

    PENDING = "pending"
    SENT = "sent"
    MINED = "mined"
    FAILED = "failed"


class BatchState(enum.StrEnum):
    """A relay transaction: signed and stored before it is broadcast, then mined or dropped."""

    SENT = "sent"
    MINED = "mined"
    DROPPED = "dropped"


class RelayBatch(Base):
    """One relay transaction, stored signed before it is broadcast so that a restart can finish it."""

    __tablename__ = "relay_batches"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    relayer: Mapped[str] = mapped_column(String(ADDRESS))
    account_nonce: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(HASH), unique=True)
    raw_tx: Mapped[bytes] = mapped_column(LargeBinary)
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[_dt.datetime]
    block_number: Mapped[int | None] = mapped_column(BigInteger)


class RelayItem(Base):
    """A patient's signed grant or revocation, from acceptance to its outcome on chain."""

    __tablename__ = "relay_items"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, shown to the patient
    patient: Mapped[str] = mapped_column(String(ADDRESS))
    kind: Mapped[str] = mapped_column(String(8))
    hospital: Mapped[str] = mapped_column(String(ADDRESS))
    purpose: Mapped[int]
    disease: Mapped[int] = mapped_column(BigInteger)
    study_id: Mapped[int] = mapped_column(BigInteger)
    kinds: Mapped[int | None]
    expires_at: Mapped[str | None] = mapped_column(String(20))  # a uint64 (decimal): may exceed a signed BIGINT
    nonce: Mapped[int] = mapped_column(BigInteger)
    deadline: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[str] = mapped_column(String(132), unique=True)  # 0x + r + s + v
    state: Mapped[str] = mapped_column(String(16))
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("relay_batches.id"), index=True)
    batch_index: Mapped[int | None]  # position in its batch transaction
    created_at: Mapped[_dt.datetime]
    updated_at: Mapped[_dt.datetime]
    tx_hash: Mapped[str | None] = mapped_column(String(HASH))
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    consent_id: Mapped[str | None] = mapped_column(String(HASH))
    event: Mapped[str | None] = mapped_column(String(32))
    error: Mapped[str | None] = mapped_column(String(96))
    error_detail: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_relay_items_state_created_at", "state", "created_at"),
        Index("ix_relay_items_patient_created_at", "patient", "created_at"),
    )


class PublishedRound(Base):
    """A hospital's publication of one round's cohort proofs: how many leaves so far, and whether all."""

    __tablename__ = "published_rounds"
    study_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    round: Mapped[int] = mapped_column(primary_key=True)
    hospital: Mapped[str] = mapped_column(String(ADDRESS), primary_key=True)
    cohort_root: Mapped[str] = mapped_column(String(HASH))
    cohort_count: Mapped[int]
    published: Mapped[int]
    complete: Mapped[bool]
    block: Mapped[int] = mapped_column(BigInteger)  # the block the contribution was anchored in
    tx_hash: Mapped[str] = mapped_column(String(HASH))  # the contribution's transaction
    updated_at: Mapped[_dt.datetime]


class CohortProof(Base):
    """A patient's record in a round's cohort: the leaf's values and its Merkle proof (for that patient only)."""

    __tablename__ = "cohort_proofs"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    patient: Mapped[str] = mapped_column(String(ADDRESS))
    study_id: Mapped[int] = mapped_column(BigInteger)
    round: Mapped[int]
    hospital: Mapped[str] = mapped_column(String(ADDRESS))
    record_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[int]
    proof: Mapped[str] = mapped_column(Text)  # JSON list of 0x-hex sibling hashes
    created_at: Mapped[_dt.datetime]

    __table_args__ = (
        UniqueConstraint("study_id", "round", "hospital", "record_id"),
        Index("ix_cohort_proofs_patient_study_id", "patient", "study_id"),
    )


class SealedRound(Base):
    """A hospital's publication of one round's sealed envelopes: its public key, how many so far, and whether all."""

    __tablename__ = "sealed_rounds"
    study_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    round: Mapped[int] = mapped_column(primary_key=True)
    hospital: Mapped[str] = mapped_column(String(ADDRESS), primary_key=True)
    hospital_public_key: Mapped[str] = mapped_column(String(130))  # 0x + x || y: patients derive tags with it
    cohort_root: Mapped[str] = mapped_column(String(HASH))
    cohort_count: Mapped[int]
    published: Mapped[int]  # envelopes stored: one per patient of the round
    complete: Mapped[bool]
    block: Mapped[int] = mapped_column(BigInteger)  # the block the contribution was anchored in
    tx_hash: Mapped[str] = mapped_column(String(HASH))  # the contribution's transaction
    updated_at: Mapped[_dt.datetime]


class SealedProof(Base):
    """One patient's envelope of one round at one hospital, under a tag only that patient and hospital can derive.

    Nothing here names the patient: the envelope is encrypted to their key (contracts/sealing.py).
    """

    __tablename__ = "sealed_proofs"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    tag: Mapped[str] = mapped_column(String(HASH), index=True)
    study_id: Mapped[int] = mapped_column(BigInteger)
    round: Mapped[int]
    hospital: Mapped[str] = mapped_column(String(ADDRESS))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[_dt.datetime]

    __table_args__ = (UniqueConstraint("study_id", "round", "hospital", "tag"),)


class StudyLaunch(Base):
    """A study's latest launch on the SuperLink: the run config it was submitted with, its run, where it stands.

    Kept so that a restarted service knows what it had launched and resumes it
    (coordinator/federated/resume.py). One row per study: a new launch replaces the previous one.
    """

    __tablename__ = "study_launches"
    study_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    state: Mapped[str] = mapped_column(String(16), index=True)  # launching, running, finished, failed
    run_config: Mapped[str] = mapped_column(Text)  # JSON object: the overrides the run was submitted with
    run_id: Mapped[str | None] = mapped_column(String(20))  # Flower's run id: a uint64 (decimal), may exceed BIGINT
    status: Mapped[str | None] = mapped_column(String(64))  # Flower's status once the run ended
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[_dt.datetime]
    ended_at: Mapped[_dt.datetime | None]
    resumed_from: Mapped[str | None] = mapped_column(String(20))  # the run this one replaced after a restart
    resumed_at: Mapped[_dt.datetime | None]
    updated_at: Mapped[_dt.datetime]
