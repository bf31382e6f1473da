"""docs/coordinator.md documents every endpoint of the API and every setting of the service."""

from __future__ import annotations

import re
from pathlib import Path

from coordinator.core.config import CoordinatorSettings
from tests.coordinator.conftest import Harness

DOC = Path(__file__).parents[2] / "docs" / "coordinator.md"


def test_every_endpoint_is_documented(service: Harness) -> None:
    text = DOC.read_text("utf-8")
    schema = service.client.get("/v1/openapi.json").json()
    routes = {re.sub(r"\{[a-z_]+\}", "{id}", f"{method.upper()} {path}")
              for path, operations in schema["paths"].items() for method in operations}
    documented = set(re.findall(r"^\| `((?:GET|POST|PUT|DELETE|PATCH) /v1/[^`]*)` \|", text, re.M))
    assert len(routes) > 20
    assert routes - documented == set(), "endpoints missing from docs/coordinator.md"
    assert documented - routes == set(), "docs/coordinator.md names endpoints that do not exist"


def test_every_setting_is_in_the_table_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(METAI_COORDINATOR_[A-Z_]+)` \| ([^|]+) \|", DOC.read_text("utf-8"), re.M))
    defaults = CoordinatorSettings(_env_file=None)  # type: ignore[call-arg]
    assert set(rows) == {f"METAI_COORDINATOR_{name.upper()}" for name in CoordinatorSettings.model_fields}
    for name in CoordinatorSettings.model_fields:
        value = getattr(defaults, name)
        shown = rows[f"METAI_COORDINATOR_{name.upper()}"].strip()
        if value is None:
            assert shown.startswith("none"), name
        else:
            expected = str(value).lower() if isinstance(value, bool) else str(value)
            assert shown.strip("`") == expected, f"{name}: the table says {shown}, the code {expected}"
