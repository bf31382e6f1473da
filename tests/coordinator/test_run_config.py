"""The run config's names are the app's, and the ServerApp reads them in one place, refusing wrong values."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from coordinator.run_config import FederationConfig, RunConfigError, RunConfigName

DEFAULTS = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text("utf-8"))["tool"]["flwr"]["app"][
    "config"]


def test_pyproject_gives_a_default_for_every_name_and_no_other() -> None:
    assert set(DEFAULTS) == {name.value for name in RunConfigName}


def test_the_defaults_make_a_config() -> None:
    cfg = FederationConfig.from_run_config(DEFAULTS)
    assert cfg.min_nodes == DEFAULTS["min-nodes"]
    assert cfg.lr == DEFAULTS["lr"]
    assert cfg.robustness_patients == DEFAULTS["robustness-patients-per-cell"]
    assert cfg.anchor is True
    assert FederationConfig.from_run_config(DEFAULTS, anchor=False).anchor is False


def test_every_field_but_the_coordinators_own_comes_from_the_run_config() -> None:
    fields = set(FederationConfig.__dataclass_fields__) - {"anchor"}
    assert fields == {name.name.lower() for name in RunConfigName}


@pytest.mark.parametrize("name", list(RunConfigName))
def test_a_missing_name_is_refused_naming_it(name: RunConfigName) -> None:
    with pytest.raises(RunConfigError, match=f"lacks '{name.value}'"):
        FederationConfig.from_run_config({k: v for k, v in DEFAULTS.items() if k != name.value})


@pytest.mark.parametrize(("name", "value"), [("min-nodes", 2.5), ("min-nodes", "2"), ("min-nodes", True),
                                             ("lr", "fast"), ("task", 3)])
def test_a_value_of_another_type_is_refused(name: str, value: object) -> None:
    with pytest.raises(RunConfigError, match=f"run config {name} = "):
        FederationConfig.from_run_config({**DEFAULTS, name: value})


def test_a_whole_number_is_taken_where_a_float_is_expected() -> None:
    assert FederationConfig.from_run_config({**DEFAULTS, "lr": 1}).lr == 1.0
