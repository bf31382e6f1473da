"""What `flwr run` packs: the app's packages copied aside, every source file of them and nothing else."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from coordinator.federated.app_source import TOP_LEVEL_FILES, app_packages, stage_app
from coordinator.federated.superlink import APP_DIR, flwr_env, tool

PACKAGES = ["audit", "contracts", "coordinator", "deploy", "node", "raw_data", "tasks"]


def _tracked(package: str) -> set[str]:
    """The files git tracks under ``package`` of this checkout."""
    out = subprocess.run(["git", "-C", str(APP_DIR), "ls-files", "-z", "--", package], capture_output=True,
                         check=True).stdout.decode()
    return {name for name in out.split("\0") if name}


def test_the_repository_app_is_its_installed_packages() -> None:
    assert app_packages(APP_DIR) == PACKAGES  # node_modules matches "node*" but is no package; tests is not installed


def test_the_staged_app_holds_its_packages_and_top_files_and_nothing_else(tmp_path: Path) -> None:
    (APP_DIR / "node" / "__pycache__").mkdir(exist_ok=True)
    staged = stage_app(APP_DIR, tmp_path / "staged")
    assert staged == tmp_path / "staged"
    assert sorted(p.name for p in staged.iterdir()) == sorted([*PACKAGES, *TOP_LEVEL_FILES])
    files = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert not [f for f in files if "__pycache__" in f or f.endswith(".pyc")]
    for package in PACKAGES:
        assert _tracked(package) <= files, package
    for name in TOP_LEVEL_FILES:
        assert (staged / name).read_bytes() == (APP_DIR / name).read_bytes()


def test_the_fab_of_the_staged_app_carries_every_source_file_the_checkout_has(tmp_path: Path) -> None:
    staged = stage_app(APP_DIR, tmp_path / "staged")
    home = tmp_path / "flwr-home"
    home.mkdir()
    done = subprocess.run([str(tool("flwr")), "build", "--app", str(staged)], cwd=tmp_path, env=flwr_env(home),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    (fab,) = tmp_path.glob("*.fab")
    packed = set(zipfile.ZipFile(fab).namelist())
    for package in PACKAGES:
        sources = {f for f in _tracked(package) if f.endswith(".py") and not os.path.basename(f).startswith("test_")}
        assert sources <= packed, sorted(sources - packed)[:5]
    assert not [n for n in packed if n.split("/")[0] in ("tests", "docs", "benchmarks", "node_modules", ".venv")]


def test_an_app_without_installed_packages_is_packed_as_it_is(tmp_path: Path) -> None:
    app = tmp_path / "probe"
    app.mkdir()
    (app / "pyproject.toml").write_text('[project]\nname = "probe"\n[tool.flwr.app]\npublisher = "x"\n')
    assert stage_app(app, tmp_path / "staged") == app
    assert not (tmp_path / "staged").exists()


def test_a_folder_that_is_no_app_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a Flower app"):
        stage_app(tmp_path, tmp_path / "staged")
