"""deploy/.env.example lists every setting of every service, with the defaults the code has, and loads as it is."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from coordinator.core.config import CoordinatorSettings
from deploy.settings import Settings
from node.config import NodeSettings

EXAMPLE = Path(__file__).parents[2] / "deploy" / ".env.example"
SERVICES: tuple[type[BaseSettings], ...] = (Settings, NodeSettings, CoordinatorSettings)
#: Read by the error boundary of every command line (node/cli/boundary.py) and by `python -m raw_data`.
SHARED = {"METAI_DEBUG"}


def _example() -> dict[str, str]:
    entries = {}
    for line in EXAMPLE.read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"not NAME=value: {line!r}"
            assert name not in entries, f"{name} twice"
            entries[name] = value
    return entries


def _names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{field}".upper() for field in settings.model_fields}


def test_every_setting_is_listed_and_nothing_else() -> None:
    assert set(_example()) == set().union(*map(_names, SERVICES)) | SHARED


@pytest.mark.parametrize("settings", SERVICES, ids=lambda s: s.__name__)
def test_the_listed_values_are_the_defaults(settings: type[BaseSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    # Loaded from the file as it is (every empty value counts as unset), the settings are the defaults.
    for name in _example():
        monkeypatch.delenv(name, raising=False)
    assert settings(_env_file=EXAMPLE) == settings(_env_file=None)  # type: ignore[call-arg]


def test_an_empty_value_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("METAI_MANIFEST", "METAI_RPC_URL", "METAI_ADMIN_KEY", "METAI_TORCH_THREADS"):
        monkeypatch.setenv(name, "")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.manifest, settings.rpc_url, settings.admin_key, settings.torch_threads) == (None, None, None, 0)
