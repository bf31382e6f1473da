"""The portal's script bundle: built from pinned npm packages, committed, and reproduced byte for byte."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "coordinator" / "portal" / "static" / "portal.js"
#: npm packages bundled into the portal's script or building it.
PORTAL_PACKAGES = ("ethers", "esbuild")


def test_the_committed_bundle_is_what_npm_run_build_portal_makes(tmp_path: Path) -> None:
    npm = shutil.which("npm")
    assert npm, "npm is not installed (Debian's nodejs/npm); `make deps` installs the toolchain"
    assert (REPO / "node_modules" / "esbuild").is_dir(), "node_modules lacks esbuild: run `npm ci`"
    fresh = tmp_path / "portal.js"
    built = subprocess.run([npm, "run", "--silent", "build:portal", "--", "--out", str(fresh)], cwd=REPO,
                           capture_output=True, text=True, timeout=120, check=False)
    assert built.returncode == 0, built.stderr
    assert fresh.read_bytes() == BUNDLE.read_bytes(), (
        "coordinator/portal/static/portal.js is not what its sources build to: run `npm run build:portal` "
        "and commit the result")


def test_the_portals_npm_packages_are_pinned_to_one_version() -> None:
    declared = json.loads((REPO / "package.json").read_text("utf-8"))["dependencies"]
    locked = json.loads((REPO / "package-lock.json").read_text("utf-8"))["packages"]
    for name in PORTAL_PACKAGES:
        assert re.fullmatch(r"\d+\.\d+\.\d+", declared[name]), f"{name} is {declared[name]!r}, not an exact version"
        assert locked[f"node_modules/{name}"]["version"] == declared[name]


def test_the_bundle_names_what_it_holds_and_fetches_nothing_from_elsewhere() -> None:
    text = BUNDLE.read_text("utf-8")
    version = json.loads((REPO / "package.json").read_text("utf-8"))["dependencies"]["ethers"]
    assert f" *   ethers {version} (MIT)" in text.splitlines()[:12]
    assert "eval(" not in text
    assert "new Function(" not in text
    assert not re.search(r"""import\(\s*["']https?:""", text)  # no module loaded from a CDN
