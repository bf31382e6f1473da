"""`make demo` runs end to end and shows what it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.model_card import CARD_JSON, read_card
from tests.coordinator.card_checks import recompute_card


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path, repo_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "deploy", "demo"],
        cwd=repo_root, capture_output=True, text=True, timeout=900,
        env={"PATH": "/usr/bin:/bin", "METAI_RUN_DIR": str(tmp_path), "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "ingested 6, already present 0, quarantined 1" in out
    assert "notes.txt: neither DICOM" in out
    assert "5 patients linked to their addresses" in out
    assert "registered ctsinogram-CT-synthetic-v1 as chain dataset 1: 5 records" in out
    assert "every record matches the disk and the chain" in out
    assert "replaying TEST-P1's signature is refused: InvalidAccountNonce" in out
    assert "study 1 is RUNNING" in out
    assert "cohort before revocation: 3 records" in out
    assert "cohort after revocation: 2 records" in out
    assert "why not TEST-P1: ConsentRegistryConsentRevoked" in out
    assert "ConsentRevoked" in out
    # the federated study across two hospitals
    assert out.count("40 patients ingested, enrolled, consented") == 2
    assert "study 2: task ct-sinogram-lesion-v1" in out
    assert "TEST-A01 revokes their consent after round 1" in out
    assert "ended finished:completed" in out
    assert "study 2: COMPLETED, 3 rounds" in out
    assert "every hash on chain matches the files" in out
    assert "RoundRecorded" in out
    assert "StudyCompleted" in out
    assert (tmp_path / "demo" / "deployment.json").exists()
    # the model card, and its figures recomputed from the saved model and the held-out data
    folder = tmp_path / "demo" / "models" / "study-2"
    card = read_card(folder / CARD_JSON)
    last = card["rounds"][-1]["held_out"]
    assert f"final held-out accuracy: {last['accuracy']:.2f} on {last['examples']} virtual patients" in out
    assert f"model card: {folder / 'model-card.md'}" in out
    assert f"training curves: {folder / 'training-curves.png'}" in out
    assert "robustness across virtual scanners (in short)" in out
    for label, value in card["robustness"]["short_table"]:
        assert label in out
        assert value in out
    recomputed = recompute_card(folder)
    assert recomputed.accuracy == last["accuracy"]
    assert recomputed.loss == pytest.approx(last["loss"], rel=1e-6, abs=1e-7)
    assert recomputed.weights_hash == card["model"]["weights_hash_on_chain"]
    assert f"final model {recomputed.weights_hash[:18]}" in out  # the chain's final hash the demo read back
    assert (folder / "training-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
