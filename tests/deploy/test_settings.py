"""Deploy settings: secrets have no default, and a malformed value is refused when the settings load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from deploy.errors import SettingsError
from deploy.settings import Settings


@pytest.mark.parametrize(("value", "why"), [("changeme", "a placeholder"), ("0x" + "0" * 64, "all zeros"),
                                            ("0x1234", "64 hex digits"), ("0x" + "g" * 64, "64 hex digits")])
def test_placeholder_or_malformed_admin_key_is_refused_as_the_settings_load(
        monkeypatch: pytest.MonkeyPatch, value: str, why: str) -> None:
    monkeypatch.setenv("METAI_ADMIN_KEY", value)
    with pytest.raises(ValidationError, match=why) as raised:
        Settings(_env_file=None)  # type: ignore[call-arg]
    assert value not in str(raised.value)  # the key itself is never shown


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_admin_key_is_refused_when_needed(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("METAI_ADMIN_KEY", raising=False)
    else:
        monkeypatch.setenv("METAI_ADMIN_KEY", value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(SettingsError, match="METAI_ADMIN_KEY is not set"):
        settings.require_admin_key()


def test_a_valid_admin_key_is_given_back() -> None:
    key = "0x" + "12" * 32
    assert Settings(_env_file=None, admin_key=key).require_admin_key() == key  # type: ignore[call-arg]


@pytest.mark.parametrize(("name", "value"), [("METAI_HOSPITALS", "0x" + "a" * 40 + ",0x123"),
                                             ("METAI_RESEARCHERS", "not-an-address"),
                                             ("METAI_COORDINATOR", "0x" + "aB" * 20),  # mixed case, bad checksum
                                             ("METAI_RPC_URL", "ftp://chain"),
                                             ("METAI_TORCH_THREADS", "-1")])
def test_a_malformed_value_is_refused_as_the_settings_load(monkeypatch: pytest.MonkeyPatch, name: str,
                                                           value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=name.removeprefix("METAI_").lower()):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_role_lists_are_read_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAI_HOSPITALS", "0x" + "a" * 40 + ", 0x" + "b" * 40)
    assert Settings(_env_file=None).hospitals == ["0x" + "a" * 40, "0x" + "b" * 40]  # type: ignore[call-arg]
