"""The PostgreSQL launcher: SQL through SQLAlchemy, loopback only, stopped by PID, restartable, a database per test."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from deploy.errors import ServiceStartError, ToolMissing
from deploy.postgres import PostgresServer, create_database, drop_database, start_postgres, stop_postgres
from deploy.process import as_user, descendants, read_log, start_time
from tests.postgres_fixture import fast_scratch


def listening(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket ``pid`` listens on, read from /proc (IPv4 and IPv6)."""
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = {target[8:-1] for fd in fd_dir.iterdir() if (target := os.readlink(fd)).startswith("socket:[")}
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                raw = bytes.fromhex(address)  # 32-bit words in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add((socket.inet_ntop(family, words), int(port, 16)))
    return found


def rows(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(query))]
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def own_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory holding an initialised data directory, for tests that stop or kill their own server."""
    directory = tmp_path_factory.mktemp("own-postgres")
    first = start_postgres(directory)
    stop_postgres(first)
    yield directory
    stop_postgres(first, delete_data=True)  # its PID is long gone: only the files go


def test_answers_sql_through_sqlalchemy_and_psycopg(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE study (id serial PRIMARY KEY, title text NOT NULL)"))
            conn.execute(text("INSERT INTO study (title) VALUES ('lesion detection'), ('dose reduction')"))
        with engine.connect() as conn:
            titles = conn.execute(text("SELECT title FROM study ORDER BY id")).scalars().all()
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
        assert titles == ["lesion detection", "dose reduction"]
    finally:
        engine.dispose()


def test_listens_on_127_0_0_1_only(postgres: PostgresServer) -> None:
    assert postgres.url.startswith(f"postgresql+psycopg://metai:{postgres.password}@127.0.0.1:{postgres.port}/")
    assert listening(postgres.pid) == {("127.0.0.1", postgres.port)}  # no 0.0.0.0, no ::


def test_the_pid_held_is_the_server_running_as_an_unprivileged_account(postgres: PostgresServer) -> None:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{postgres.pid}/status").read_text().splitlines())
    account = pwd.getpwnam(postgres.os_user)
    assert Path(f"/proc/{postgres.pid}/comm").read_text().strip() == "postgres"
    assert [int(uid) for uid in status["Uid"].split()] == [account.pw_uid] * 4
    assert {int(gid) for gid in status["Groups"].split()} == set(os.getgrouplist(account.pw_name, account.pw_gid))
    assert postgres.os_user == ("postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name)


def test_each_test_gets_an_empty_database_of_its_own(postgres: PostgresServer, postgres_url: str) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    assert name.startswith("test_")
    assert name != postgres.database
    assert rows(postgres_url, "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'") == [(0,)]


def test_two_databases_do_not_share_tables(postgres: PostgresServer, postgres_url: str) -> None:
    other_name = f"test_{uuid.uuid4().hex}"
    other_url = create_database(postgres, other_name)
    try:
        engine = create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE mine (n integer)"))
        engine.dispose()
        other = create_engine(other_url)
        assert inspect(other).get_table_names() == []
        other.dispose()
    finally:
        drop_database(postgres, other_name)
    assert rows(postgres.url, f"SELECT 1 FROM pg_database WHERE datname = '{other_name}'") == []


def test_drop_database_ends_the_sessions_still_open_on_it(postgres: PostgresServer) -> None:
    name = f"test_{uuid.uuid4().hex}"
    engine = create_engine(create_database(postgres, name))
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))  # back in the pool, still connected
        drop_database(postgres, name)
        assert rows(postgres.url, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") == []
    finally:
        engine.dispose()


def test_stopping_by_pid_leaves_no_process(own_directory: Path) -> None:
    server = start_postgres(own_directory)
    family = descendants(server.pid)
    assert len(family) >= 4  # checkpointer, background writer, WAL writer, autovacuum launcher, ...
    stop_postgres(server)
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid, 0)
    assert [pid for pid, started in family if start_time(pid) == started] == []
    assert "database system is shut down" in read_log(server.log_file)


def test_a_killed_server_starts_again_on_its_data(own_directory: Path) -> None:
    table = f"kept_{uuid.uuid4().hex}"
    server = start_postgres(own_directory)
    try:
        engine = create_engine(server.url)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {table} (n integer)"))
            conn.execute(text(f"INSERT INTO {table} VALUES (7)"))
        engine.dispose()
        os.kill(server.pid, signal.SIGKILL)
    finally:
        stop_postgres(server)  # reaps it, so its PID no longer holds the data directory's lock
    log_start = server.log_file.stat().st_size
    again = start_postgres(own_directory)
    try:
        assert again.data_dir == server.data_dir
        assert again.pid != server.pid
        assert "automatic recovery in progress" in read_log(again.log_file, log_start)
        assert rows(again.url, f"SELECT n FROM {table}") == [(7,)]
    finally:
        stop_postgres(again)


def test_a_taken_port_is_reported_with_the_log(own_directory: Path, postgres: PostgresServer) -> None:
    with pytest.raises(ServiceStartError, match=r"postgres exited with 1:(.|\n)*Address already in use"):
        start_postgres(own_directory, port=postgres.port, timeout=10)


@pytest.mark.skipif(os.geteuid() != 0, reason="only a server started by root runs as another account")
def test_as_root_the_data_goes_where_the_postgres_account_can_reach_it(own_directory: Path) -> None:
    cannot_enter = subprocess.run(["test", "-x", str(own_directory)], check=False, **as_user("postgres")).returncode
    files = (own_directory / "server").resolve()
    assert cannot_enter == 1  # pytest's tmp_path is root's alone (0700)
    assert files.parent == Path(tempfile.gettempdir())
    assert files.name.startswith("metai-postgres-")
    assert (files.stat().st_uid, files.stat().st_mode & 0o777) == (pwd.getpwnam("postgres").pw_uid, 0o700)


def test_data_put_in_scratch_is_linked_and_deleted_with_the_link(tmp_path: Path) -> None:
    scratch = fast_scratch() or Path(tempfile.gettempdir())
    server = start_postgres(tmp_path / "pg", scratch=scratch)
    files = server.data_dir.parent
    assert (tmp_path / "pg" / "server").resolve() == files
    assert files.parent == scratch
    assert files.stat().st_uid == pwd.getpwnam(server.os_user).pw_uid
    stop_postgres(server, delete_data=True)
    assert not files.exists()
    assert not os.path.lexists(tmp_path / "pg" / "server")
    assert (tmp_path / "pg" / "postgres.log").exists()


def test_a_missing_server_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("deploy.postgres.DEBIAN_ROOT", tmp_path)
    with pytest.raises(ToolMissing, match=r"install the Debian package `postgresql`"):
        start_postgres(tmp_path / "pg")
