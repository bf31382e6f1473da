"""deploy/templates: the systemd units of the node and coordinator services pass `systemd-analyze verify`,
and the settings files beside them name only settings their service reads, with every one it requires."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from coordinator.core.config import CoordinatorSettings
from node.config import NodeSettings

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "deploy" / "templates"
INSTALLED = "/opt/metai-exchange"  # where the units expect the checkout (docs/deploy-*.md)
UNITS = {"metai-node": NodeSettings, "metai-coordinator": CoordinatorSettings}


def _installed_here(unit: str, tmp_path: Path) -> Path:
    """The unit as it would be installed from this checkout: its paths pointed at this worktree and tmp_path."""
    text = (TEMPLATES / f"{unit}.service").read_text(encoding="utf-8")
    env_file = tmp_path / f"{unit.removeprefix('metai-')}.env"
    shutil.copyfile(TEMPLATES / f"{unit}.env", env_file)
    text = text.replace(INSTALLED, str(REPO)).replace(f"/etc/metai/{env_file.name}", str(env_file))
    target = tmp_path / f"{unit}.service"
    target.write_text(text, encoding="utf-8")
    return target


def _settings_file(unit: str) -> dict[str, str]:
    entries = {}
    for line in (TEMPLATES / f"{unit}.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{unit}.env: not NAME=value: {line!r}"
            entries[name.strip()] = value
    return entries


def _names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in settings.model_fields}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", sorted(UNITS))
def test_the_unit_verifies(unit: str, tmp_path: Path) -> None:
    done = subprocess.run(["systemd-analyze", "verify", str(_installed_here(unit, tmp_path))],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_verify_catches_a_wrong_program(tmp_path: Path) -> None:
    unit = _installed_here("metai-node", tmp_path)
    unit.write_text(unit.read_text(encoding="utf-8").replace("bin/metai-node serve", "bin/metai-nod serve"))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode != 0
    assert "metai-nod is not executable" in done.stderr


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_the_settings_file_names_only_settings_of_its_service(unit: str) -> None:
    assert set(_settings_file(unit)) <= _names(UNITS[unit])


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_the_unit_runs_the_service_on_its_settings_file(unit: str) -> None:
    text = (TEMPLATES / f"{unit}.service").read_text(encoding="utf-8")
    assert f"EnvironmentFile=/etc/metai/{unit.removeprefix('metai-')}.env" in text
    assert f"ExecStart={INSTALLED}/.venv/bin/{unit} serve" in text
