"""A real PostgreSQL on loopback for the test session, and a fresh empty database for each test.

The server is Debian's, started by :func:`deploy.postgres.start_postgres` once per session (per
xdist worker: each worker has its own), stopped by its PID and its data deleted at the end. Tests
take ``postgres_url``: a database of their own, created for the test and dropped (its sessions
ended) after it, so no test sees another's tables. The data lives on /dev/shm when it has room:
on a tmpfs a database is created in about 16 ms, on this machine's disk in 240 ms.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.postgres import PostgresServer, create_database, drop_database, start_postgres, stop_postgres

TMPFS = Path("/dev/shm")
TMPFS_ROOM = 1 << 30  # bytes free it must have: Docker gives /dev/shm only 64 MB, and PostgreSQL uses it too


def fast_scratch() -> Path | None:
    """/dev/shm if it has room for the server's data, else None (``start_postgres``'s default place)."""
    return TMPFS if TMPFS.is_dir() and shutil.disk_usage(TMPFS).free >= TMPFS_ROOM else None


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The session's PostgreSQL server.

    A missing Debian package ``postgresql`` fails the tests that need it (``make test`` installs
    it): a skip would let the PostgreSQL half of the API tests pass unseen.
    """
    server = start_postgres(tmp_path_factory.mktemp("postgres"), scratch=fast_scratch())
    yield server
    stop_postgres(server, delete_data=True)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of an empty database made for this test alone."""
    name = f"test_{uuid.uuid4().hex}"
    url = create_database(postgres, name)
    yield url
    drop_database(postgres, name)
