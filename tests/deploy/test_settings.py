"""Deploy settings: secrets have no default and placeholders are refused."""

from __future__ import annotations

import pytest

from deploy.errors import SettingsError
from deploy.settings import Settings


@pytest.mark.parametrize("value", ["", "changeme", "0x" + "0" * 64, "0x1234"])
def test_placeholder_or_malformed_admin_key_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("METAI_ADMIN_KEY", value)
    with pytest.raises(SettingsError, match="METAI_ADMIN_KEY"):
        Settings(_env_file=None).require_admin_key()  # type: ignore[call-arg]


def test_unset_admin_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METAI_ADMIN_KEY", raising=False)
    with pytest.raises(SettingsError, match="not set"):
        Settings(_env_file=None).require_admin_key()  # type: ignore[call-arg]


def test_role_lists_are_read_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAI_HOSPITALS", "0x" + "a" * 40 + ", 0x" + "b" * 40)
    assert Settings(_env_file=None).hospitals == ["0x" + "a" * 40, "0x" + "b" * 40]  # type: ignore[call-arg]
