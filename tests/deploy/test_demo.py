"""`make demo` runs end to end through the coordinator's API and shows what it promises."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from coordinator.model_card import CARD_JSON, read_card
from deploy.process import start_time
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
    # part 1 through the API: four grants relayed (together), a replay refused, a revocation relayed
    granted = re.findall(r"TEST-P[1-4]: signed in, signed typed data \(nonce 0\), relayed in block (\d+), "
                         r"transaction 0x[0-9a-f]{16}…, consent 0x[0-9a-f]{16}…", out)
    assert len(granted) == 4
    assert "replaying TEST-P1's signature is refused: 409 nonce-used: nonce 0 is used" in out
    assert "study 1 is RUNNING" in out
    assert "cohort before revocation: 3 records" in out
    assert re.search(r"TEST-P1's revocation: relayed in block \d+", out)
    assert "cohort after revocation: 2 records" in out
    assert "why not TEST-P1: ConsentRegistryConsentRevoked" in out
    assert "ConsentRevoked" in out
    # the federated study across two hospitals: 80 grants relayed in batches
    assert out.count("40 patients ingested and enrolled") == 2
    batches = re.search(r"80 patients signed in and consented through the API .* the relay carried them in (\d+) "
                        r"transactions: (.*)", out)
    assert batches is not None, out
    sizes = [int(n) for n in re.findall(r"block \d+ \((\d+)\)", batches.group(2))]
    assert sum(sizes) == 80
    assert len(sizes) == int(batches.group(1))
    assert max(sizes) > 1, sizes  # batches, not one transaction per grant
    assert re.search(r"study 2: task ct-sinogram-lesion-v1, code hash 0x[0-9a-f]{16}…, requested, "
                     r"0x[0-9a-fA-F]{8}… approved, 0x[0-9a-fA-F]{8}… approved", out)
    # started by the operator and followed by the researcher through the API
    assert re.search(r"the operator starts study 2 through the API: RUNNING on chain, Flower run \d+ running", out)
    rounds = re.findall(r"round (\d) recorded in block \d+: cohorts 0x[0-9a-fA-F]{8}… (\d+), 0x[0-9a-fA-F]{8}… (\d+); "
                        r"held-out accuracy (\d\.\d\d)", out)
    assert [r[0] for r in rounds] == ["1", "2", "3"], rounds
    assert "TEST-A01 revokes their consent after round 1 through the API: relayed in block" in out
    assert "ended finished:completed" in out
    assert out.count("signed in and published round 1 (") == 2
    # downloaded through the API: the saved model hashes to the chain's final hash; the lineage file
    demo = tmp_path / "demo"
    assert re.search(r"X-Model-Hash (0x[0-9a-f]{16})…, recomputed from the file \1…, on chain \1…: equal", out)
    lineage = json.loads((demo / "study-2-lineage.json").read_text())
    assert (lineage["format"], lineage["version"], lineage["final_model_matches_chain"]) == (
        "metai-study-lineage", 1, True)
    assert lineage["study"]["status"] == "completed"
    assert [r["round"] for r in lineage["study"]["round_records"]] == [1, 2, 3]
    assert {"StudyRequested", "StudyStarted", "RoundRecorded", "StudyCompleted"} <= {
        e["event"] for e in lineage["events"]}
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
    assert last["accuracy"] >= 0.75  # well above chance (0.5)
    assert f"held-out accuracy {last['accuracy']:.2f}" in out  # as the researcher saw round 3
    from tasks import load_weights, weights_hash

    saved = "0x" + weights_hash(load_weights(demo / "study-2-final-model.npz")).hex()
    assert saved == card["model"]["weights_hash_on_chain"]
    # the last step: TEST-A01's receipt, every proof verified on chain
    receipt = json.loads((demo / "receipt-TEST-A01.json").read_text())
    assert (receipt["format"], receipt["version"]) == ("metai-patient-receipt", 1)
    [consent] = receipt["consents"]
    assert consent["state"] == "revoked"
    assert f"revoked in tx {consent['revoked_tx']}" in out
    assert f"granted in tx {consent['granted_tx']}" in out
    [use] = receipt["data_uses"]
    assert [(r["round"], r["included"]) for r in use["rounds"]] == [(1, True), (2, False), (3, False)]
    assert "my records were in round(s) 1, not in round(s) 2, 3" in out
    assert out.count("verified on chain") == sum(len(r["records"]) for r in use["rounds"]) == 1
    assert "NOT verified" not in out
    assert "every proof in the receipt holds on chain" in out
    # nothing of the demo's is left running (no --serve)
    pids = [int(p) for p in re.findall(r"coordinator service stopped \(pid ([\d, ]+)\)", out)[0].split(", ")]
    assert len(pids) == 2  # started, then started again with the SuperLink's address
    for pid in pids:
        assert start_time(pid) is None or b"coordinator.cli" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    url = re.search(r"coordinator service pid \d+ starting at (http://127\.0\.0\.1:\d+)", out)
    assert url is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url.group(1)}/v1/health", timeout=5)
    # the demo ends with an independent audit of the study: it passes, and it checked every cohort member
    assert re.search(r"metai-audit: study 2 on chain \d+, read up to block \d+: PASSED", out), out[-3000:]
    report = json.loads((tmp_path / "demo" / "audit" / "report.json").read_text())
    assert report["ok"] is True
    assert report["findings"] == []
    members = sum(len(json.loads(p.read_text())["members"])
                  for p in (tmp_path / "demo" / "audit").glob("*/rounds/*/cohorts/*.json"))
    assert members > 0
    assert report["checks_passed"]["cohort.consent"] == members
    assert report["checks_passed"]["aggregation.model"] == 3
