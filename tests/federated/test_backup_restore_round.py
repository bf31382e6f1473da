"""A hospital's node, lost between two rounds of a study, is restored from its backup and trains the next round.

On the Flower deployment engine (Anvil + SuperLink + a SuperNode and a signing agent per hospital): the
study's first round runs; its rounds are spaced an hour apart (``round-delay``), so the second cannot
start during the test's first federation. Alpha backs its node up while its SuperNode and signing agent
serve (``metai-node backup``), then Alpha's host is lost: the federation goes down and Alpha's node
directory is removed. ``metai-node restore`` brings the node back into a new directory, ``metai-node
status`` shows the same hospital, a federation is brought up with the restored node, and the study,
launched again, resumes at round 2 (the coordinator resumes from the chain's ``rounds_completed``):
Alpha's contribution to it is anchored by the same hospital address, from the restored node's data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contracts.studies import StudyStatus
from coordinator.federated.superlink import CONNECTION, stop_run, submit_run
from coordinator.study_log import read_study_log
from deploy.federation import Federation, NodeSpec
from node.cohort import build_cohort
from node.kept_cohort import read_kept_cohort
from node.lineage import read_sent_manifest
from node.node import Node
from tests.conftest import NODE_PASSPHRASE
from tests.federated.conftest import REPO, STUDY_CONFIG, running_study

#: Seconds the first round may take to be recorded on chain before the test gives up.
ROUND_WAIT = 900.0


def metai_node(node_dir: Path, rpc_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``metai-node`` in a process of its own, as the hospital's operator would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    env.update({"PYTHONPATH": str(REPO), "METAI_NODE_DIR": str(node_dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
                "METAI_NODE_RPC_URL": rpc_url})
    return subprocess.run([sys.executable, "-m", "node.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def wait_for_round(exchange, federation: Federation, study: int, round_: int) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + ROUND_WAIT
    while exchange.studies.round_model_hash(study, round_) == bytes(32):
        dead = [m.name for m in federation.status() if not m.running]
        assert not dead, f"{dead} stopped before round {round_} was recorded"
        assert time.monotonic() < deadline, f"round {round_} was not recorded within {ROUND_WAIT} s"
        time.sleep(0.5)


@pytest.mark.slow
def test_a_node_restored_from_its_backup_trains_the_next_round(  # type: ignore[no-untyped-def]
        tmp_path: Path, exchange, actors, hospitals, node_specs, coordinator_env) -> None:
    alpha, beta = hospitals
    address, rpc = alpha.node.address, exchange.chain.rpc_url
    study = running_study(exchange, actors, hospitals, rounds=2)
    archive = tmp_path / "backups" / "alpha.tar"
    archive.parent.mkdir()

    with Federation.up(tmp_path / "federation-1", node_specs, coordinator_env=coordinator_env) as federation:
        run = submit_run(federation.app_dir, flwr_home=federation.superlink.flwr_home, federation=CONNECTION,
                         run_config={**STUDY_CONFIG, "study-id": study, "round-delay": 3600.0})
        wait_for_round(exchange, federation, study, 1)
        serving = {(m.role, m.name) for m in federation.status() if m.running}
        assert {("supernode", address), ("signer", address)} <= serving
        backup = metai_node(alpha.node.dir, rpc, "backup", "--out", str(archive))  # while Alpha's node serves
        stop_run(run.run_id, CONNECTION, federation.superlink.flwr_home)
    assert backup.returncode == 0, backup.stderr
    assert exchange.studies.study(study).rounds_completed == 1
    round_1 = exchange.studies.contribution_of(study, 1, address)
    sent_1 = read_sent_manifest(alpha.node.dir, study, 1)

    lost = alpha.node.dir  # Alpha's host is lost, and its node directory with it
    alpha.node.sessions.kw["bind"].dispose()
    shutil.rmtree(lost)
    restored = tmp_path / "new-host" / "metai-node"
    done = metai_node(restored, rpc, "restore", str(archive), "--dir", str(restored), "--check-passphrase")
    assert done.returncode == 0, done.stderr
    status = metai_node(restored, rpc, "status")
    assert status.returncode == 0, status.stderr
    assert f"node {restored}: Alpha Hospital ({address})" in status.stdout
    assert "HOSPITAL role held" in status.stdout

    specs = [NodeSpec(restored, node_specs[0].passphrase_file), node_specs[1]]
    with Federation.up(tmp_path / "federation-2", specs, coordinator_env=coordinator_env) as federation:
        result = federation.launch(study, {**STUDY_CONFIG, "round-delay": 0.0}, timeout=900)
    assert result.status == "finished:completed", result.logs[-3000:]

    record = exchange.studies.study(study)
    assert (record.status, record.rounds_completed) == (StudyStatus.COMPLETED, 2)
    node = Node(restored, NODE_PASSPHRASE)
    round_2 = exchange.studies.contribution_of(study, 2, address)
    assert round_2 is not None
    assert round_2.cohort_count == 12
    kept = read_kept_cohort(restored, study, 2)
    assert kept.root == "0x" + round_2.cohort_root.hex()
    assert build_cohort(node, study, kept.block).root == round_2.cohort_root  # the restored catalog and chain agree
    log = read_study_log(Path(coordinator_env["METAI_COORDINATOR_MODEL_DIR"]) / f"study-{study}")
    assert [sorted(r.contributors) for r in log.rounds] == [sorted([address, beta.node.address])] * 2
    # what round 1 left on Alpha's node came back with it: its kept cohort and the manifest it sent
    assert read_kept_cohort(restored, study, 1).root == "0x" + round_1.cohort_root.hex()
    assert read_sent_manifest(restored, study, 1) == sent_1
