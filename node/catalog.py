"""The node's SQLite catalog (SQLAlchemy): patients, keys, enrolments, records, datasets, challenges, quarantine.

Patients appear only under their pseudonym; the local patient id, the date shift and the
address are also kept sealed in :mod:`node.vault`. Records are content-addressed: ``record_id``
is the sha256 of the stored (de-identified) file, and ``source_sha256`` of the file as it was
given, so ingesting the same file twice changes nothing.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from sqlalchemy import ForeignKey, LargeBinary, String, UniqueConstraint, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from node.private import create_file

CATALOG_FILE = "catalog.sqlite"


def utcnow() -> _dt.datetime:
    """The current time in UTC (naive, as SQLite stores it)."""
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Patient(Base):
    """A pseudonymous patient of this hospital."""

    __tablename__ = "patients"
    pseudonym: Mapped[str] = mapped_column(String(32), primary_key=True)
    lookup: Mapped[str] = mapped_column(String(64), unique=True)  # HMAC of the local patient id
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # vault entry: local id, date shift, address
    address: Mapped[str | None] = mapped_column(String(42), index=True)  # set by enrolment
    enrolled_at: Mapped[_dt.datetime | None]
    created_at: Mapped[_dt.datetime] = mapped_column(default=utcnow)
    records: Mapped[list[Record]] = relationship(back_populates="patient")


class PatientKey(Base):
    """The public key behind an enrolled address, recovered from the enrolment signature.

    Sealed cohort proofs are encrypted to it (``contracts/sealing.py``). Keyed by address, so a
    cohort kept before a patient re-enrolled with another key still finds the key it was made for.
    """

    __tablename__ = "patient_keys"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(ForeignKey("patients.pseudonym"), index=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # 64 bytes: x || y
    recorded_at: Mapped[_dt.datetime] = mapped_column(default=utcnow)


class Enrolment(Base):
    """The signed challenge that linked an address to a patient: the proof of the link an auditor checks.

    Kept for enrolments that succeeded only, keyed by address like :class:`PatientKey` (a
    patient who enrols again with the same key replaces it). A node's cohort manifests
    (:mod:`node.lineage`) carry it: the signature recovers the address, and the text names
    this hospital and nothing about the patient.
    """

    __tablename__ = "enrolments"
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    pseudonym: Mapped[str] = mapped_column(ForeignKey("patients.pseudonym"), index=True)
    challenge: Mapped[str] = mapped_column(String(1024))  # the text the patient signed (EIP-191)
    signature: Mapped[str] = mapped_column(String(132))  # 0x followed by 130 hex digits
    enrolled_at: Mapped[_dt.datetime] = mapped_column(default=utcnow)


class Record(Base):
    """One stored object: a de-identified DICOM instance, an ISMRMRD file or a sinogram file."""

    __tablename__ = "records"
    record_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of stored content
    source_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    patient_pseudonym: Mapped[str] = mapped_column(ForeignKey("patients.pseudonym"), index=True)
    kind: Mapped[int]  # contracts.datause.Kind
    modality: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(32))  # dicom | ismrmrd | metai-ct-sinogram
    path: Mapped[str] = mapped_column(String(256))  # relative to the node directory
    size: Mapped[int]
    synthetic: Mapped[bool] = mapped_column(default=False)
    label: Mapped[str | None] = mapped_column(String(64))
    study_uid: Mapped[str | None] = mapped_column(String(64))  # de-identified
    series_uid: Mapped[str | None] = mapped_column(String(64))
    ingested_at: Mapped[_dt.datetime] = mapped_column(default=utcnow)
    patient: Mapped[Patient] = relationship(back_populates="records")


class Dataset(Base):
    """A frozen set of records, anchored on chain as a Merkle root once registered."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[int]
    modality: Mapped[str] = mapped_column(String(16))
    synthetic: Mapped[bool]
    merkle_root: Mapped[str] = mapped_column(String(64))
    record_count: Mapped[int]
    chain_dataset_id: Mapped[int | None]
    registered_block: Mapped[int | None]
    registered_tx: Mapped[str | None] = mapped_column(String(66))
    created_at: Mapped[_dt.datetime] = mapped_column(default=utcnow)


class DatasetRecord(Base):
    """Membership of a record in a dataset."""

    __tablename__ = "dataset_records"
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.record_id"), primary_key=True)


class Challenge(Base):
    """A node-issued enrolment challenge a patient signs to prove control of an address."""

    __tablename__ = "challenges"
    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_pseudonym: Mapped[str] = mapped_column(ForeignKey("patients.pseudonym"), index=True)
    text: Mapped[str] = mapped_column(String(1024))
    expires_at: Mapped[_dt.datetime]
    used: Mapped[bool] = mapped_column(default=False)


class QuarantineEntry(Base):
    """A file that could not be ingested, kept aside with the reason."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source_sha256", "reason"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    source_path: Mapped[str] = mapped_column(String(1024))
    source_sha256: Mapped[str] = mapped_column(String(64))
    quarantine_path: Mapped[str] = mapped_column(String(1024))
    reason: Mapped[str] = mapped_column(String(1024))
    at: Mapped[_dt.datetime] = mapped_column(default=utcnow)


def open_catalog(node_dir: Path) -> sessionmaker[Session]:
    """Open (creating if needed) the catalog of the node in ``node_dir``."""
    # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the mode of
    # the database file, so the whole catalog stays private whatever the umask.
    create_file(node_dir / CATALOG_FILE)
    engine = create_engine(f"sqlite:///{node_dir / CATALOG_FILE}")
    _tune_sqlite(engine)
    Base.metadata.create_all(engine)  # also adds the tables a newer version brought to an older catalog
    return sessionmaker(engine, expire_on_commit=False)


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        # WAL + NORMAL: a crash loses at most the last transactions, never corrupts the file.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

