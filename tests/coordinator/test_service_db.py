"""The coordinator's database: the migrations make exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import text

from coordinator.core.config import CoordinatorSettings
from coordinator.core.db import Database, DatabaseError, current_revision, head_revision, upgrade
from coordinator.models.tables import Base


def test_the_migrations_make_the_declared_schema(database_url: str) -> None:
    database = Database(database_url)
    try:
        assert current_revision(database.engine) is None
        upgrade(database.engine)
        with database.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert current_revision(database.engine) == head_revision()
    finally:
        database.close()


def test_migrating_twice_changes_nothing(database_url: str) -> None:
    database = Database(database_url)
    try:
        upgrade(database.engine)
        upgrade(database.engine)
        assert current_revision(database.engine) == head_revision()
    finally:
        database.close()


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("public_url", "https://exchange.example.org/portal", "origin only"),
    ("public_url", "ftp://exchange.example.org", r"http\(s\) URL"),
    ("database_url", "mysql://db/x", "sqlite:///PATH or postgresql"),
    ("port", "70000", "less than or equal to 65535"),
    ("relay_batch", "500", "less than or equal to 200"),
])
def test_a_malformed_service_setting_is_refused_as_it_loads(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                                            expected: str) -> None:
    monkeypatch.setenv(f"METAI_COORDINATOR_{name.upper()}", value)
    with pytest.raises(ValidationError, match=expected):
        CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]


def test_the_sign_in_domain_is_the_public_urls_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAI_COORDINATOR_PUBLIC_URL", "https://exchange.example.org:8443/")
    settings = CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.public_url, settings.domain) == ("https://exchange.example.org:8443",
                                                      "exchange.example.org:8443")


def test_sqlite_writers_take_turns_and_a_failed_or_abandoned_one_frees_the_turn(tmp_path: Path) -> None:
    import threading

    from sqlalchemy import text

    database = Database(f"sqlite:///{tmp_path / 'writers.sqlite'}")
    with database.session() as db:
        db.execute(text("CREATE TABLE counter (n INTEGER)"))
        db.execute(text("INSERT INTO counter VALUES (0)"))

    def failing_handler() -> None:
        with database.session() as db:  # rolled back: the next writer must not wait
            db.execute(text("UPDATE counter SET n = n + 100"))
            raise RuntimeError("a handler failed mid-transaction")

    with pytest.raises(RuntimeError):
        failing_handler()
    abandoned = database._sessions()  # begun, then closed without commit or rollback
    abandoned.execute(text("UPDATE counter SET n = n + 1000"))
    abandoned.close()
    errors: list[BaseException] = []

    def add(times: int) -> None:
        try:
            for _ in range(times):
                with database.session() as db:
                    n = db.execute(text("SELECT n FROM counter")).scalar_one()
                    db.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})  # a read-modify-write
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(50,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with database.reading() as db:
        assert db.execute(text("SELECT n FROM counter")).scalar_one() == 400  # no lost update, nothing locked
    database.close()


_HOLDER = """
import sys, time
from coordinator.core.db import Database
lease = Database(sys.argv[1]).try_lease("consent-relay")
print("held" if lease is not None else "refused", flush=True)
time.sleep(600)
"""


def test_a_lease_has_one_holder_across_processes_and_a_sigkill_of_the_holder_frees_it(database_url: str) -> None:
    """What keeps two relays off one outbox: another process holds it until it dies, however it dies."""
    Database(database_url).close()  # a SQLite file's folder exists before the holder opens it
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, database_url], stdout=subprocess.PIPE, env=env)
    database = Database(database_url)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"held\n"
        assert database.try_lease("consent-relay") is None
        other = database.try_lease("another lease")  # names are independent
        assert other is not None
        other.release()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        deadline = time.monotonic() + 10  # PostgreSQL ends the dead client's session as its socket closes
        lease = database.try_lease("consent-relay")
        while lease is None and time.monotonic() < deadline:
            time.sleep(0.05)
            lease = database.try_lease("consent-relay")
        assert lease is not None, "the lease of a killed process was never freed"
        assert database.try_lease("consent-relay") is None  # one holder within one process too
        lease.release()
        lease.release()  # a second release does nothing
        again = database.try_lease("consent-relay")
        assert again is not None
        again.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        database.close()


def _migrated_by_a_newer_release(path: Path) -> str:
    """A SQLite database at a schema revision this release lacks, as a newer release would leave it."""
    url = f"sqlite:///{path}"
    database = Database(url)
    try:
        upgrade(database.engine)
        with database.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '9999_newer'"))
    finally:
        database.close()
    return url


def test_a_database_a_newer_release_migrated_is_refused_naming_its_revision(tmp_path: Path) -> None:
    database = Database(_migrated_by_a_newer_release(tmp_path / "coordinator.sqlite"))
    try:
        with pytest.raises(DatabaseError, match=rf"is at schema revision '9999_newer', which this release does not "
                                                rf"know \(its newest is '{head_revision()}'\): a newer release"):
            upgrade(database.engine)
        assert current_revision(database.engine) == "9999_newer"  # left as it was
    finally:
        database.close()


def test_migrate_on_a_database_a_newer_release_migrated_says_so_in_one_line(tmp_path: Path) -> None:
    url = _migrated_by_a_newer_release(tmp_path / "coordinator.sqlite")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "METAI_COORDINATOR_DATABASE_URL": url}
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "migrate"], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: the database at {url} is at schema revision '9999_newer', which this "
                                  "release does not know")
