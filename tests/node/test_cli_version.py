"""``metai-node --version``: the version of the installed distribution, or one error line without one."""

from __future__ import annotations

import importlib.metadata

import pytest
from typer.testing import CliRunner

from node.cli import app


def test_version_prints_the_installed_distribution_s_version() -> None:
    result = CliRunner().invoke(app, ["--version"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"metai-node {importlib.metadata.version('metai-exchange')}\n"
    assert result.stderr == ""


def test_version_without_an_installed_distribution_is_one_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("node.cli.main.DISTRIBUTION", "metai-exchange-not-installed")
    result = CliRunner().invoke(app, ["--version"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == ("error: the metai-exchange-not-installed distribution is not installed, so it has no "
                             "version; install it (`pip install -e .` in the source tree, which `make` does)\n")
