"""The package import rules (tests/import_rules.py) hold, and the checker finds each kind of breach."""

from __future__ import annotations

from pathlib import Path

from tests.import_rules import cycles, graph, layer_violations, problems


def test_the_project_keeps_its_import_rules() -> None:
    assert problems() == []


def test_the_checker_sees_the_whole_project() -> None:
    edges = graph()
    assert len(edges) > 100
    assert "contracts.enums" in edges["contracts.errors"]  # a top-level import
    assert "node.client_app" in edges  # every package is read


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_imports_inside_a_function_and_for_type_checking_count(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "raw_data/__init__.py": "",
        "raw_data/a.py": "def f():\n    from tasks.b import g  # hidden in a function\n",
        "raw_data/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tasks.b import g\n",
        "tasks/__init__.py": "",
        "tasks/b.py": "from raw_data import a\n",
    })
    edges = graph(root)
    assert edges["raw_data.a"] == {"tasks.b"}
    assert edges["raw_data.c"] == {"tasks.b"}
    assert edges["tasks.b"] == {"raw_data.a"}  # `from package import module` is the module
    assert layer_violations(edges) == ["raw_data.a imports tasks.b: raw_data may import no other package",
                                       "raw_data.c imports tasks.b: raw_data may import no other package"]
    assert cycles(edges) == [["raw_data.a", "tasks.b"]]


def test_relative_imports_and_longer_cycles_are_resolved(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "contracts/__init__.py": "",
        "contracts/x.py": "from .y import Y\n",
        "contracts/y.py": "from . import z\n",
        "contracts/z.py": "import contracts.x\n",
        "contracts/free.py": "import contracts.deeper.missing\n",  # the nearest module that exists
        "node/__init__.py": "",
        "node/n.py": "from deploy import d\n",
        "deploy/__init__.py": "",
        "deploy/d.py": "",
    })
    edges = graph(root)
    assert edges["contracts.x"] == {"contracts.y"}
    assert edges["contracts.y"] == {"contracts.z"}
    assert edges["contracts.free"] == {"contracts"}
    assert cycles(edges) == [["contracts.x", "contracts.y", "contracts.z"]]
    assert layer_violations(edges) == [
        "node.n imports deploy.d: node may import contracts, raw_data, tasks"]
