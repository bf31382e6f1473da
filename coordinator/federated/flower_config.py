"""Flower configuration values: the app's run-config defaults, checks on values passed to Flower, TOML out.

Shared by the coordinator (run-config overrides of the runs it submits) and deploy (the node
configs of the SuperNodes it starts).

Flower reads node configs and run-config overrides from TOML files (``--node-config FILE``,
``--run-config FILE``): values may hold spaces and quotes, which its ``key=value`` words cannot.
They are written with ``tomli_w``; values are checked first (one-line text, numbers, booleans).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import tomli_w

__all__ = ["ConfigValue", "check_run_config_keys", "checked_config", "read_app_config", "read_project", "toml_text"]

ConfigValue = str | int | float | bool
_CONFIG_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


def read_project(app_dir: Path) -> dict[str, Any]:
    """Return the app's ``pyproject.toml``, parsed.

    Raises:
        ValueError: ``app_dir/pyproject.toml`` cannot be read or parsed.
    """
    try:
        return tomllib.loads((app_dir / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{app_dir} is not a Flower app: its pyproject.toml cannot be read ({exc})") from None


def read_app_config(app_dir: Path) -> dict[str, ConfigValue]:
    """Return the defaults of the app's ``[tool.flwr.app.config]``, nested keys joined with dots.

    Raises:
        ValueError: ``app_dir/pyproject.toml`` cannot be read or parsed.
    """
    project = read_project(app_dir)
    return _flat(project.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {}))


def checked_config(config: Mapping[str, ConfigValue], what: str) -> Mapping[str, ConfigValue]:
    """Return ``config`` once each key is a Flower config key and each value one Flower can pass.

    Raises:
        ValueError: a key that is not letters, digits, ``_`` or ``-`` (dots nest), a value of
            another type, or text holding a control character.
    """
    for key, value in config.items():
        if not _CONFIG_KEY.match(key):
            raise ValueError(f"{what} key {key!r} must be letters, digits, '_' or '-' (dots nest)")
        if not isinstance(value, str | int | float | bool):
            raise ValueError(f"{what}[{key!r}] is {type(value).__name__}, expected str, int, float or bool")
        if isinstance(value, str) and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError(f"{what}[{key!r}] holds a control character; Flower configs take one-line text")
    return config


def check_run_config_keys(app_dir: Path, run_config: Mapping[str, ConfigValue]) -> None:
    """Refuse run-config keys the app does not declare (Flower says only "Invalid run configuration").

    Raises:
        ValueError: the unknown keys, with the known ones.
    """
    known = set(read_app_config(app_dir))
    if unknown := sorted(set(run_config) - known):
        raise ValueError(
            f"run_config keys {unknown} are not in [tool.flwr.app.config] of {app_dir / 'pyproject.toml'} "
            f"(known: {sorted(known)}); add them there first"
        )


def _flat(table: Mapping[str, object], prefix: str = "") -> dict[str, ConfigValue]:
    flat: dict[str, ConfigValue] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, str | int | float | bool):
            flat[prefix + key] = value
    return flat


def toml_text(table: Mapping[str, object]) -> str:
    """A TOML document of ``table`` (tables, strings, numbers, booleans and lists: all a Flower config holds).

    Raises:
        ValueError: a value TOML cannot hold.
    """
    try:
        return tomli_w.dumps(dict(table))
    except TypeError as exc:
        raise ValueError(f"cannot write to TOML: {exc}") from None
