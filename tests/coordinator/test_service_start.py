"""Starting a study through the API: who may, which studies, which run configs, and what a failed launch leaves.

Against the session's real chain; the SuperLink here is a port nobody listens on, so a launch
that gets as far as submitting fails there. Real runs started through the API: `make demo` (its
test is tests/deploy/test_demo.py) and the studies of tests/multihost/test_consortium.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak

from contracts.datause import Kind, Purpose
from contracts.enums import StudyStatus
from contracts.events import StudyStarted, read_events
from contracts.exchange import Exchange
from contracts.studies import StudyRequest
from deploy.process import free_port
from tasks import task_code_hash
from tests.chain_steps import contribute
from tests.conftest import Actors
from tests.coordinator.conftest import Harness

TASK = "ct-sinogram-lesion-v1"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: starting a study writes nothing to the service's database, and a launch that reaches
    the SuperLink takes seconds, which a second run on PostgreSQL would only repeat."""
    return f"sqlite:///{tmp_path / 'coordinator.sqlite'}"


@pytest.fixture
def launching(service_factory: Callable[..., Harness]) -> Harness:
    """The service pointed at a SuperLink address on loopback where nothing listens."""
    return service_factory(superlink_address=f"127.0.0.1:{free_port()}", superlink_insecure=True)


def _requested(exchange: Exchange, actors: Actors, *approving: Any) -> int:
    """A study naming both hospitals, approved by ``approving``."""
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=task_code_hash(TASK), rounds=1))
    for hospital in approving:
        exchange.studies.approve(hospital, study_id)
    return int(study_id)


def _start(service: Harness, account: Any, study_id: int, **body: Any) -> Any:
    return service.client.post(f"/v1/studies/{study_id}/start", json=body or None, headers=service.bearer(account))


def test_only_the_coordinator_starts_a_study(launching: Harness, actors: Actors) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital, actors.hospital2)
    for account in (actors.researcher, actors.hospital, actors.stranger):
        refused = _start(launching, account, study_id)
        assert refused.status_code == 403, refused.text
        assert refused.json()["type"] == "urn:metai:problem:role-required"
    assert launching.exchange.studies.study(study_id).status == StudyStatus.REQUESTED


def test_starting_needs_a_session(launching: Harness, actors: Actors) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital, actors.hospital2)
    refused = launching.client.post(f"/v1/studies/{study_id}/start")
    assert refused.status_code == 401
    assert refused.json()["type"] == "urn:metai:problem:not-signed-in"


def test_a_service_without_a_superlink_refuses_before_the_chain(service: Harness, actors: Actors) -> None:
    study_id = _requested(service.exchange, actors, actors.hospital, actors.hospital2)
    refused = _start(service, actors.coordinator, study_id)
    assert refused.status_code == 503, refused.text
    assert refused.json()["type"] == "urn:metai:problem:launch-unconfigured"
    assert "METAI_COORDINATOR_SUPERLINK_ADDRESS is not set" in refused.json()["detail"]
    assert service.exchange.studies.study(study_id).status == StudyStatus.REQUESTED


def test_a_missing_root_certificate_is_named(service_factory: Callable[..., Harness], actors: Actors,
                                             tmp_path: Path) -> None:
    service = service_factory(superlink_address="127.0.0.1:9093", superlink_root_certificates=tmp_path / "ca.pem")
    study_id = _requested(service.exchange, actors, actors.hospital, actors.hospital2)
    refused = _start(service, actors.coordinator, study_id)
    assert refused.status_code == 503, refused.text
    assert f"{tmp_path / 'ca.pem'}, which does not exist" in refused.json()["detail"]


def test_an_unknown_study_is_not_found(launching: Harness, actors: Actors) -> None:
    refused = _start(launching, actors.coordinator, 999)
    assert refused.status_code == 404
    assert refused.json()["detail"] == "study 999 does not exist"


def test_a_study_with_pending_decisions_is_refused_naming_them(launching: Harness, actors: Actors) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital)
    refused = _start(launching, actors.coordinator, study_id)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert (problem["type"], problem["study_status"]) == ("urn:metai:problem:decisions-pending", "requested")
    assert problem["pending"] == [actors.hospital2.address]
    assert launching.exchange.studies.study(study_id).status == StudyStatus.REQUESTED


def test_a_declined_study_is_refused_naming_its_status(launching: Harness, actors: Actors) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital)
    launching.exchange.studies.decline(actors.hospital2, study_id)
    refused = _start(launching, actors.coordinator, study_id)
    assert refused.status_code == 409, refused.text
    assert (refused.json()["type"], refused.json()["study_status"]) == ("urn:metai:problem:study-not-startable",
                                                                        "declined")


def test_a_completed_study_is_refused_naming_its_status(launching: Harness, actors: Actors) -> None:
    studies = launching.exchange.studies
    study_id = _requested(launching.exchange, actors, actors.hospital, actors.hospital2)
    studies.start(actors.coordinator, study_id)
    for n, hospital in enumerate((actors.hospital, actors.hospital2)):
        contribute(launching.exchange, hospital, study_id, 1, keccak(text=f"root {n}"), 10, keccak(text=f"update {n}"))
    studies.record_round(actors.coordinator, study_id, 1, keccak(text="model"),
                         [actors.hospital.address, actors.hospital2.address])
    studies.complete(actors.coordinator, study_id, keccak(text="model"), keccak(text="lineage bundle"))
    refused = _start(launching, actors.coordinator, study_id)
    assert refused.status_code == 409, refused.text
    assert refused.json()["study_status"] == "completed"


@pytest.mark.parametrize(("run_config", "why"), [
    ({"no-such-key": 1}, "'no-such-key' is not in [tool.flwr.app.config]"),
    ({"study-id": 1}, "study-id is set from the study"),
    ({"task": "mr-kspace-lesion-v1"}, "task is set from the study"),
    ({"local-epochs": 1.5}, "expected int like its default"),
    ({"lr": "fast"}, "expected float like its default"),
    ({"local-epochs": True}, "expected int like its default"),
    ({"min-nodes": 3}, "min-nodes is 3 but the study names 2 hospital(s)"),
])
def test_a_run_config_the_app_does_not_take_is_refused_before_the_chain(
        launching: Harness, actors: Actors, run_config: dict[str, Any], why: str) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital, actors.hospital2)
    refused = _start(launching, actors.coordinator, study_id, run_config=run_config)
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"] == "urn:metai:problem:invalid-run-config"
    assert why in refused.json()["detail"]
    assert launching.exchange.studies.study(study_id).status == StudyStatus.REQUESTED


def test_an_approved_study_is_started_on_chain_even_when_the_superlink_is_down(launching: Harness,
                                                                               actors: Actors) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital, actors.hospital2)
    refused = _start(launching, actors.coordinator, study_id, run_config={"local-epochs": 1})
    assert refused.status_code == 502, refused.text
    problem = refused.json()
    assert (problem["type"], problem["study_status"]) == ("urn:metai:problem:run-not-submitted", "running")
    assert "Connection to the SuperLink is unavailable" in problem["detail"]
    assert launching.exchange.studies.study(study_id).status == StudyStatus.RUNNING
    events = read_events(launching.exchange.chain, [launching.exchange.studies.address])
    started = [e.coordinator for e in events if isinstance(e, StudyStarted) and e.study_id == study_id]
    assert started == [actors.coordinator.address]
    run = launching.client.get(f"/v1/studies/{study_id}/run", headers=launching.bearer(actors.coordinator)).json()
    assert (run["state"], run["run_id"]) == ("failed", None)
    assert "Connection to the SuperLink is unavailable" in run["error"]


def test_a_running_study_is_launched_again_without_another_start(launching: Harness, actors: Actors) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital, actors.hospital2)
    launching.exchange.studies.start(actors.coordinator, study_id)  # an earlier launch started it
    refused = _start(launching, actors.coordinator, study_id)
    assert refused.status_code == 502, refused.text  # the relaunch reached the SuperLink, not a chain refusal
    assert refused.json()["type"] == "urn:metai:problem:run-not-submitted"


def test_the_run_is_shown_to_the_coordinator_only(launching: Harness, actors: Actors) -> None:
    study_id = _requested(launching.exchange, actors, actors.hospital, actors.hospital2)
    refused = launching.client.get(f"/v1/studies/{study_id}/run", headers=launching.bearer(actors.researcher))
    assert refused.status_code == 403
    none = launching.client.get(f"/v1/studies/{study_id}/run", headers=launching.bearer(actors.coordinator))
    assert none.status_code == 404
    assert none.json()["type"] == "urn:metai:problem:no-launch"
