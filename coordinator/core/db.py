"""The coordinator service's database: an engine for SQLite or PostgreSQL, migrations, sessions.

SQLite is the default (embedded, nothing to install); PostgreSQL is used by URL. The schema is
made only by the Alembic migrations beside this module, which :func:`upgrade` applies on start,
so a database made by an older release is brought up to date instead of being refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from coordinator.errors import CoordinatorError

MIGRATIONS = Path(__file__).with_name("migrations")
_READONLY = "metai_readonly"


class DatabaseError(CoordinatorError, RuntimeError):
    """The service's database cannot be opened, migrated or reached."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while the relay writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


#: Seconds a write transaction waits for another to end before it fails (SQLite's busy timeout as well).
WRITE_WAIT = 10.0


def _serial_writer_class() -> type[sqlite3.Connection]:
    """A SQLite connection class whose write transactions queue on one lock shared by its connections.

    SQLite lets one transaction write at a time. A second writer that finds the lock taken
    sleeps in SQLite's busy handler, in steps that grow to 100 ms, however soon the lock is
    freed: under many concurrent writes (signed consents arriving) most of the time went on
    those sleeps. Writers of one process instead wait on a lock of their own here, which wakes
    the next one the moment the transaction before it ends. Other processes still meet the busy
    handler.
    """

    lock = threading.Lock()

    class SerialWriter(sqlite3.Connection):
        holds_write_lock = False

        def begin_write(self) -> None:
            if not lock.acquire(timeout=WRITE_WAIT):
                raise sqlite3.OperationalError(f"database is locked (no write lock within {WRITE_WAIT:g} s)")
            self.holds_write_lock = True
            try:
                self.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._release()
                raise

        def _release(self) -> None:
            if self.holds_write_lock:
                self.holds_write_lock = False
                lock.release()

        def commit(self) -> None:
            try:
                super().commit()
            finally:
                self._release()

        def rollback(self) -> None:
            try:
                super().rollback()
            finally:
                self._release()

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._release()

    return SerialWriter


def _sqlite_begin(connection: Any) -> None:
    # A transaction that may write begins with BEGIN IMMEDIATE: it takes the write lock at once,
    # waiting for it if another connection writes. A deferred BEGIN that reads and then writes
    # cannot wait: if another connection committed in between, SQLite refuses the upgrade at
    # once ("database is locked"), which concurrent sign-ins hit under load. Sessions opened with
    # Database.reading() only read: they begin deferred and never wait for writers (WAL).
    if connection.get_execution_options().get(_READONLY, False):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.connection.dbapi_connection.begin_write()


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///PATH`` or ``postgresql+psycopg://...``); a SQLite file's folder is made."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: pysqlite leaves transactions to us, so that "begin" below decides how.
        engine = create_engine(url, connect_args={"check_same_thread": False, "isolation_level": None,
                                                  "factory": _serial_writer_class(), "timeout": WRITE_WAIT},
                               pool_size=20, max_overflow=20)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":  # the plain scheme means psycopg2 to SQLAlchemy; the project ships psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_size=20, max_overflow=20, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Bring the database's schema to the newest migration.

    Raises:
        DatabaseError: the database cannot be reached, a migration fails, or the database is at a
            revision this release does not know (a newer release migrated it).
    """
    where = engine.url.render_as_string()  # the password hidden
    try:
        command.upgrade(_alembic_config(engine), "head")
    except SQLAlchemyError as exc:
        raise DatabaseError(f"cannot migrate the database at {where}: {exc}") from exc
    except CommandError as exc:
        known = {script.revision for script in ScriptDirectory.from_config(_alembic_config(engine)).walk_revisions()}
        found = current_revision(engine)
        if found is not None and found not in known:
            raise DatabaseError(
                f"the database at {where} is at schema revision {found!r}, which this release does not know (its "
                f"newest is {head_revision()!r}): a newer release migrated it, and migrations only go forward; run "
                "that release, or restore the database backup taken before the upgrade "
                "(docs/deploy-coordinator.md#upgrade)") from None
        raise DatabaseError(f"cannot migrate the database at {where}: {exc}") from exc


def head_revision() -> str:
    """The newest migration's revision id."""
    head = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://"))).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None before the first)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class Lease:
    """A named lock on one database that at most one holder has at a time, in any process.

    For a SQLite file it is an advisory ``flock`` on a file beside the database; for PostgreSQL a
    session advisory lock held by a connection of its own; for an in-memory SQLite database (one
    process only) a lock of the :class:`Database`. The operating system or the database server
    releases it when its holder's process ends, however it ends (SIGKILL included), so a holder
    that died never keeps the next one waiting.
    """

    def __init__(self, release: Any) -> None:
        self._release = release

    def release(self) -> None:
        """Give the lock up (a second call does nothing)."""
        release, self._release = self._release, None
        if release is not None:
            release()


class Database:
    """The service's engine and its sessions."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self._local_leases: dict[str, threading.Lock] = {}
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_engine = self.engine.execution_options(**{_READONLY: True})
        self._reads = sessionmaker(self._read_engine, expire_on_commit=False)

    @property
    def in_memory(self) -> bool:
        """Whether it is an in-memory SQLite database (which no other process can open)."""
        url = self.engine.url
        return url.get_backend_name() == "sqlite" and (not url.database or url.database == ":memory:")

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.url.get_backend_name()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session that only reads: on SQLite it does not take the write lock (readers never wait for writers)."""
        with self._reads.begin() as session:
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A plain connection in a read-only transaction: for hot lookups that need no ORM session around them."""
        with self._read_engine.begin() as connection:
            yield connection

    def try_lease(self, name: str) -> Lease | None:
        """Take the lock ``name`` on this database if nobody holds it; None if somebody does.

        Raises:
            DatabaseError: the lock cannot be asked for (the lock file cannot be made, the
                database does not answer).
        """
        url = self.engine.url
        if url.get_backend_name() == "sqlite":
            if self.in_memory:
                lock = self._local_leases.setdefault(name, threading.Lock())
                return Lease(lock.release) if lock.acquire(blocking=False) else None
            database = Path(url.database or "")
            path = database.with_name(f"{database.name}.{name}.lock")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise DatabaseError(f"cannot open the lock file {path}: {exc}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            return Lease(lambda: os.close(fd))  # closing the file gives the flock up
        # PostgreSQL: a session-level advisory lock, keyed by a 63-bit hash of the name.
        key = int.from_bytes(hashlib.blake2b(f"metai.{name}".encode(), digest_size=8).digest(), "big") >> 1
        try:
            connection = self.engine.connect()
        except SQLAlchemyError as exc:
            raise DatabaseError(f"cannot reach the database to take the lock {name!r}: {exc}") from exc
        try:
            taken = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
            connection.commit()
        except SQLAlchemyError as exc:
            connection.close()
            raise DatabaseError(f"cannot take the lock {name!r}: {exc}") from exc
        if not taken:
            connection.close()
            return None

        def release() -> None:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                connection.commit()
            except SQLAlchemyError:
                connection.invalidate()  # closing the session releases it in any case
            finally:
                connection.close()

        return Lease(release)

    def reachable(self) -> bool:
        """Whether a trivial query answers."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except SQLAlchemyError:
            return False
        return True

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
