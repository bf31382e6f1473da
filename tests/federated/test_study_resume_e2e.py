"""The coordinator service is killed mid-study and started again: it resumes the study from the chain.

The service runs its own SuperLink behind the Fleet gateway (METAI_COORDINATOR_SUPERLINK=managed),
each hospital's SuperNode and signing agent connect through the gateway as in a deployment across
hosts. The operator starts a study of two rounds spaced ``round-delay`` seconds apart; once round 1
is anchored on chain, the service process gets a real SIGKILL, in that pause. The service is
started again on the same database and SuperLink folder: it stops what the killed one left
running (the SuperLink, its ServerApp) and, finding the study's launch on record and the study
still RUNNING on chain, submits a new run with the same run config, which trains round 2 only
and completes the study.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.events import RoundRecorded, read_events
from contracts.studies import StudyStatus
from coordinator.study_log import read_study_log
from deploy.process import stop_tree
from deploy.signers import SignerProcess, stop_signer
from tasks import load_weights, weights_hash
from tests.coordinator.managed_service import ManagedService, Node, connect_hospital
from tests.federated.conftest import STUDY_CONFIG, running_study

ROUNDS = 2
#: Seconds between rounds: long enough that the killed service's ServerApp, which runs on until the
#: next start of the service stops it, does not begin round 2 meanwhile (a start took up to 16 s on
#: two busy cores before it stopped the old SuperLink).
DELAY = 30.0
WAIT = 900.0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run(service: ManagedService, operator: dict[str, str], study_id: int) -> dict[str, Any]:
    answer = httpx.get(f"{service.url}/v1/studies/{study_id}/run", headers=operator, timeout=30)
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()
    return run


@pytest.mark.slow
def test_a_killed_service_resumes_its_study_after_the_last_anchored_round(  # type: ignore[no-untyped-def]
        tmp_path: Path, exchange, actors, hospitals, node_specs) -> None:
    study_id = running_study(exchange, actors, hospitals, rounds=ROUNDS, start=False)
    service = ManagedService(tmp_path / "coordinator", exchange, actors)
    service.start()
    study_dir = service.root / "models" / f"study-{study_id}"
    signers: list[SignerProcess] = []
    nodes: list[Node] = []
    try:
        operator = service.sign_in(actors.coordinator)
        for spec in node_specs:
            signer, node = connect_hospital(service, operator, spec, tmp_path)
            signers.append(signer)
            nodes.append(node)
        run_config = {**{k: v for k, v in STUDY_CONFIG.items() if k != "task"}, "round-delay": DELAY}
        launched = httpx.post(f"{service.url}/v1/studies/{study_id}/start", headers=operator,
                              json={"run_config": run_config}, timeout=120)
        assert launched.status_code == 202, launched.text
        first_run = launched.json()["run_id"]

        assert service.proc is not None
        deadline = time.monotonic() + WAIT
        while exchange.studies.study(study_id).rounds_completed < 1:
            assert service.proc.poll() is None, "the service ended by itself"
            assert time.monotonic() < deadline, f"round 1 was not anchored within {WAIT} s"
            time.sleep(0.2)
        os.kill(service.proc.pid, signal.SIGKILL)
        service.proc.wait(10)
        assert exchange.studies.study(study_id).rounds_completed == 1  # killed in the pause before round 2
        round_1 = read_study_log(study_dir).rounds[0]
        round_1_files = {path: _sha256(path) for path in (study_dir / "round-1.npz",
                                                          study_dir / "lineage" / "rounds" / "1" / "model.npz")}

        service.start()  # the same database, SuperLink folder, ports and model folder
        operator = service.sign_in(actors.coordinator)
        deadline = time.monotonic() + WAIT
        while (run := _run(service, operator, study_id))["state"] in ("launching", "running") \
                or run["run_id"] == first_run:
            assert time.monotonic() < deadline, f"the resumed run did not end within {WAIT} s: {run}"
            time.sleep(2.0)
    finally:
        for node in nodes:
            stop_tree(node.proc.pid, (), 10)
        for signer in signers:
            stop_signer(signer)
        service.stop()

    # the service's launch: a new run, resumed from the killed one, completed
    assert (run["state"], run["status"], run["error"]) == ("finished", "finished:completed", None), run
    assert run["run_id"] != first_run
    assert run["resumed_from_run_id"] == first_run
    # the chain: the study completed, each round recorded once, by both hospitals
    record = exchange.studies.study(study_id)
    assert (record.status, record.rounds_completed) == (StudyStatus.COMPLETED, ROUNDS)
    recorded = [e for e in read_events(exchange.chain, [exchange.studies.address])
                if isinstance(e, RoundRecorded) and e.study_id == study_id]
    assert [e.round for e in recorded] == list(range(1, ROUNDS + 1))
    for event in recorded:
        assert sorted(event.contributors) == sorted(h.node.address for h in hospitals)
    # the models: each round's saved model is the one the chain records; round 1's were not made again
    for round_ in range(1, ROUNDS + 1):
        assert weights_hash(load_weights(study_dir / f"round-{round_}.npz")) == \
            exchange.studies.round_model_hash(study_id, round_)
    assert {path: _sha256(path) for path in round_1_files} == round_1_files
    log = read_study_log(study_dir)
    assert [r.round for r in log.rounds] == list(range(1, ROUNDS + 1))
    assert log.rounds[0] == round_1
    # the resumed run trained round 2 only; the service's log says it resumed the study, naming both runs
    resumed_log = (service.root / "flwr-home" / "runs" / f"{run['run_id']}.log").read_text()
    assert re.findall(rf"study {study_id} round (\d+):", resumed_log) == ["2"]
    service_log = service.log.read_text()
    assert (f"study {study_id}: resumed after the restart: run {first_run} did not survive the restart; 1 of "
            f"{ROUNDS} rounds are anchored on chain, 1 to run") in service_log
    assert f"submitted run {run['run_id']} with the same run config" in service_log
