"""The coordinator operator starts a study through the service's API, and the run goes to its end.

A loopback federation (Anvil, a SuperLink with the coordinator's settings, two SuperNodes with
their signing agents) is brought up with deploy.federation; the service, pointed at that
SuperLink, sends ``start`` on chain, submits the run and follows it, and the study's view shows
it completed with its rounds. The refusals are tests/coordinator/test_service_start.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from contracts.studies import StudyStatus
from coordinator.main import create_app
from deploy.federation import Federation
from tests.coordinator.conftest import PUBLIC_URL, Harness, make_service
from tests.federated.conftest import STUDY_CONFIG, running_study, specs_of, write_coordinator_env

ROUNDS = 2
#: Seconds the run may take here (two rounds take about a minute on two cores).
WAIT = 600.0


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory, hospitals, module_exchange,  # type: ignore[no-untyped-def]
               actors) -> Iterator[tuple[Federation, Path]]:
    """The module's federation (no TLS) and the model folder its ServerApp writes to."""
    root = tmp_path_factory.mktemp("start-federation")
    env = write_coordinator_env(root, module_exchange, actors)
    with Federation.up(root / "federation", specs_of(hospitals, root), coordinator_env=env) as up:
        yield up, Path(env["METAI_COORDINATOR_MODEL_DIR"])


@pytest.fixture
def service(federation: tuple[Federation, Path], exchange, actors, tmp_path: Path) -> Iterator[Harness]:  # type: ignore[no-untyped-def]
    """The coordinator service pointed at the federation's SuperLink, sharing the ServerApp's model folder."""
    up, models = federation
    services, settings = make_service(
        exchange, actors, tmp_path / "service", f"sqlite:///{tmp_path / 'coordinator.sqlite'}",
        superlink_address=up.superlink.control_address, superlink_insecure=True, flwr_home=tmp_path / "flwr-home",
        model_dir=models)
    with TestClient(create_app(services, run_relay=False), base_url=PUBLIC_URL) as client:
        yield Harness(services, client, exchange, settings)
    services.close()


@pytest.mark.slow
def test_the_operator_starts_a_study_and_it_completes(service: Harness, exchange, actors,  # type: ignore[no-untyped-def]
                                                       hospitals) -> None:
    study_id = running_study(exchange, actors, hospitals, rounds=ROUNDS, start=False)
    operator = service.bearer(actors.coordinator)
    run_config = {key: value for key, value in STUDY_CONFIG.items() if key != "task"}  # the study names its task

    started = service.client.post(f"/v1/studies/{study_id}/start", json={"run_config": run_config}, headers=operator)
    assert started.status_code == 202, started.text
    assert started.headers["location"] == f"/v1/studies/{study_id}/run"
    launch = started.json()
    assert launch["state"] == "running", launch
    assert launch["run_id"].isdigit(), launch
    assert exchange.studies.study(study_id).status == StudyStatus.RUNNING

    again = service.client.post(f"/v1/studies/{study_id}/start", headers=operator)
    assert again.status_code == 409, again.text
    assert (again.json()["type"], again.json()["run_id"]) == ("urn:metai:problem:run-in-progress", launch["run_id"])

    researcher = service.bearer(actors.researcher)
    deadline = time.monotonic() + WAIT
    while True:
        run: dict[str, Any] = service.client.get(f"/v1/studies/{study_id}/run", headers=operator).json()
        view: dict[str, Any] = service.client.get(f"/v1/studies/{study_id}", headers=researcher).json()
        if run["state"] != "running":  # the study is completed on chain before its run ends
            break
        assert time.monotonic() < deadline, f"the run did not end within {WAIT} s: {run}, {view['status']}"
        time.sleep(2.0)

    assert (run["state"], run["status"], run["run_id"]) == ("finished", "finished:completed", launch["run_id"]), run
    assert view["status"] == "completed"
    assert view["rounds_completed"] == ROUNDS
    assert [r["round"] for r in view["round_records"]] == list(range(1, ROUNDS + 1))
    for record in view["round_records"]:
        assert sorted(c["hospital"] for c in record["contributions"]) == sorted(h.node.address for h in hospitals)
        assert all(c["cohort_count"] == 12 for c in record["contributions"])
        assert record["model_hash"] == "0x" + exchange.studies.round_model_hash(study_id, record["round"]).hex()
        assert record["metrics"] is not None, record
    assert view["final_model_hash"] == "0x" + exchange.studies.study(study_id).final_model_hash.hex()
