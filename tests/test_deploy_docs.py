"""The deployment guides (docs/deploy-*.md): each one's settings table lists exactly its service's settings,
with the defaults the code has and the values its settings file in deploy/templates holds, and the README
and the architecture page link to both guides."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from coordinator.core.config import CoordinatorSettings
from node.config import NodeSettings

REPO = Path(__file__).resolve().parent.parent
GUIDES = {"deploy-hospital.md": (NodeSettings, "metai-node.env"),
          "deploy-coordinator.md": (CoordinatorSettings, "metai-coordinator.env")}
_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]*) \| ([^|]*) \| [^|]+ \|$", re.M)


def settings_rows(page: str) -> dict[str, tuple[str, str]]:
    """The rows of the page's "## Settings" section: variable -> (default cell, template cell)."""
    section = page.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for name, default, template in _ROW.findall(section):
        assert name not in rows, f"{name} twice"
        rows[name] = (default.strip(), template.strip())
    return rows


def template_values(file_name: str) -> dict[str, str]:
    """NAME -> value of a settings file in deploy/templates (comments and blank lines left out)."""
    entries = {}
    for line in (REPO / "deploy" / "templates" / file_name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            entries[name.strip()] = value.strip()
    return entries


def _env_names(settings: type[BaseSettings]) -> dict[str, str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    return {f"{prefix}{field}".upper(): field for field in settings.model_fields}


def _shown(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def mismatches(rows: dict[str, tuple[str, str]], settings: type[BaseSettings], template: dict[str, str]) -> list[str]:
    """What the table gets wrong about ``settings`` and its settings file (empty: nothing)."""
    names = _env_names(settings)
    wrong = [f"{name}: missing from the table" for name in sorted(set(names) - set(rows))]
    wrong += [f"{name}: not a setting of {settings.__name__}" for name in sorted(set(rows) - set(names))]
    defaults = settings(_env_file=None)  # type: ignore[call-arg]
    for name in sorted(set(rows) & set(names)):
        default_cell, template_cell = rows[name]
        value = getattr(defaults, names[name])
        if value is None:
            if not default_cell.startswith("none"):
                wrong.append(f"{name}: the code has no default, the table says {default_cell}")
        elif not default_cell.startswith(f"`{_shown(value)}`"):
            wrong.append(f"{name}: the code's default is {_shown(value)}, the table says {default_cell}")
        expected = f"`{template[name]}`" if name in template else "not set"
        if template_cell != expected:
            wrong.append(f"{name}: the settings file has {expected}, the table says {template_cell}")
    return wrong


@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_the_settings_table_is_the_services_settings_with_defaults_and_template_values(
        guide: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, template_file = GUIDES[guide]
    for name in _env_names(settings):  # the defaults are the code's, whatever this shell has set
        monkeypatch.delenv(name, raising=False)
    rows = settings_rows((REPO / "docs" / guide).read_text(encoding="utf-8"))
    assert mismatches(rows, settings, template_values(template_file)) == []


def test_a_wrong_table_is_named_row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _env_names(NodeSettings):
        monkeypatch.delenv(name, raising=False)
    page = (REPO / "docs" / "deploy-hospital.md").read_text(encoding="utf-8")
    page = page.replace("| `METAI_NODE_HEALTH_PORT` | `9095` |", "| `METAI_NODE_HEALTH_PORT` | `9096` |")
    page = page.replace("| `METAI_NODE_LOG_BACKUPS` | `5` | `5` |", "| `METAI_NODE_LOG_BACKUPS` | `5` | not set |")
    page = re.sub(r"^\| `METAI_NODE_GAS_ROUNDS` .*\n", "", page, flags=re.M)
    page = page.replace("\n## Ports and firewall", "| `METAI_NODE_COLOUR` | none | not set | made up |\n\n## Ports")
    assert mismatches(settings_rows(page), NodeSettings, template_values("metai-node.env")) == [
        "METAI_NODE_GAS_ROUNDS: missing from the table",
        "METAI_NODE_COLOUR: not a setting of NodeSettings",
        "METAI_NODE_HEALTH_PORT: the code's default is 9095, the table says `9096`",
        "METAI_NODE_LOG_BACKUPS: the settings file has `5`, the table says not set",
    ]


@pytest.mark.parametrize("page", ["README.md", "docs/architecture.md"])
def test_the_guides_are_linked_from(page: str) -> None:
    text = (REPO / page).read_text(encoding="utf-8")
    prefix = "docs/" if page == "README.md" else ""
    for guide in GUIDES:
        assert f"]({prefix}{guide}" in text, f"{page} does not link to {guide}"
