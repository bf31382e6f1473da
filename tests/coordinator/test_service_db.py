"""The coordinator's database: the migrations make exactly the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pydantic import ValidationError

from coordinator.core.config import CoordinatorSettings
from coordinator.core.db import Database, current_revision, head_revision, upgrade
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
