"""The Flower app's source as ``flwr run`` packs it: the app's own packages, copied aside first.

``flwr run <folder>`` builds the FAB (the app's code, which every SuperNode installs and runs)
from ``<folder>``. It lists every file under the folder before it applies its include and
exclude patterns, so a checkout that holds its venv and ``node_modules`` (some 60,000 files)
cost about 4 s of CPU per submitted study in that walk alone, and the FAB carried the docs,
benchmarks and test helpers along. :func:`stage_app` copies only what the app is made of, the
packages ``pyproject.toml`` installs, into a folder of its own, and ``flwr run`` packs that.
"""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path

from coordinator.federated.flower_config import read_project

__all__ = ["TOP_LEVEL_FILES", "app_packages", "stage_app"]

#: Files of the app's root that go with its packages (those missing are skipped).
TOP_LEVEL_FILES = ("pyproject.toml", ".gitignore", "LICENSE", "README.md")
_NOT_SOURCE = shutil.ignore_patterns("__pycache__", "*.pyc")


def app_packages(app_dir: Path) -> list[str]:
    """Return the top-level packages of ``app_dir`` that its ``[tool.setuptools.packages.find]`` includes.

    A package is a folder holding ``__init__.py`` whose name matches one of the ``include``
    patterns (``"node*"`` matches ``node`` but not the ``node_modules`` folder, which is no
    package). Empty when ``pyproject.toml`` names no such patterns.

    Raises:
        ValueError: ``app_dir/pyproject.toml`` cannot be read or parsed.
    """
    project = read_project(app_dir)
    find = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    patterns = [p for p in find.get("include", []) if isinstance(p, str)] if isinstance(find, dict) else []
    return sorted(
        entry.name
        for entry in app_dir.iterdir()
        if entry.is_dir()
        and (entry / "__init__.py").is_file()
        and any(fnmatch.fnmatchcase(entry.name, p) for p in patterns)
    )


def stage_app(app_dir: Path, into: Path) -> Path:
    """Copy the app in ``app_dir`` (its packages and :data:`TOP_LEVEL_FILES`) into the empty folder ``into``.

    Returns:
        ``into``, ready for ``flwr run``; or ``app_dir`` itself when its ``pyproject.toml``
        names no packages (a small app folder, packed as it is).

    Raises:
        ValueError: ``app_dir/pyproject.toml`` cannot be read or parsed.
        OSError: a file cannot be copied.
    """
    packages = app_packages(app_dir)
    if not packages:
        return app_dir
    into.mkdir(parents=True, exist_ok=True)
    for name in TOP_LEVEL_FILES:
        if (app_dir / name).is_file():
            shutil.copy2(app_dir / name, into / name)
    for package in packages:
        shutil.copytree(app_dir / package, into / package, ignore=_NOT_SOURCE, symlinks=True)
    return into
