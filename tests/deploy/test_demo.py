"""`make demo`'s chain part runs end to end and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "demo"],
        cwd=repo_root, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "METAI_RUN_DIR": str(tmp_path), "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "registered dataset 1: 64 synthetic CT records" in out
    assert "replaying patient-1's signature is refused: InvalidAccountNonce" in out
    assert "ConsentRevoked" in out
    assert (tmp_path / "demo" / "deployment.json").exists()
    before, after = out.split("batch view, after revocation")
    assert before.count("yes") == 3
    assert after.count("yes") == 2
