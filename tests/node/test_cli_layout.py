"""``metai-node`` is split by topic, every command runs in the one boundary, and no command runs SQL itself."""

from __future__ import annotations

import ast
from pathlib import Path

from typer.main import get_command
from typer.testing import CliRunner

from node.cli import app
from node.cli.common import BOUNDARY

CLI = Path(__file__).parents[2] / "node" / "cli"
TOPICS = {"setup", "data", "patients", "studies", "backup", "service"}


def _imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_command_module_touches_the_database() -> None:
    for path in CLI.glob("*.py"):
        database = {m for m in _imported(path) if m.split(".")[0] == "sqlalchemy" or m == "node.catalog"}
        assert database == set(), f"{path.name} imports {database}: queries belong in the node's modules"


def test_every_command_comes_from_a_topic_module_and_runs_in_the_boundary() -> None:
    group = get_command(app)
    assert type(group).__name__ == type(BOUNDARY).__name__ + "Group"  # Boundary.group() makes a "BoundaryGroup"
    modules = {info.callback.__module__ for info in app.registered_commands if info.callback is not None}
    assert modules == {f"node.cli.{topic}" for topic in TOPICS}
    assert len(app.registered_commands) == len(group.commands)  # type: ignore[attr-defined]


def test_a_choice_outside_the_list_is_refused_before_anything_runs(tmp_path: Path) -> None:
    env = {"METAI_NODE_DIR": str(tmp_path / "absent-node"), "METAI_NODE_PASSPHRASE": ""}
    result = CliRunner().invoke(app, ["ingest", "--burned-in", "maybe", str(tmp_path)], env=env)
    assert result.exit_code == 2  # click's usage error: nothing was opened (the node does not even exist)
    assert "'maybe' is not one of 'refuse', 'flag'" in result.output
