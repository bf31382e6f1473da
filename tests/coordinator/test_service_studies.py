"""Studies through the API: tasks, a request prepared for the researcher's wallet, who sees what,
following live, lineage and the model download (researcher only, checked against the chain)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from eth_utils.crypto import keccak

from contracts.datause import Kind, Purpose
from contracts.studies import StudyRequest
from coordinator.study_log import final_model, round_model, study_folder
from tasks import save_weights, task_code_hash, weights_hash
from tests.chain_steps import contribute
from tests.conftest import Actors
from tests.coordinator.conftest import Harness

TASK = "ct-sinogram-lesion-v1"


@dataclass(frozen=True)
class Completed:
    study_id: int
    final_hash: str


def _completed_study(service: Harness, actors: Actors, *, write_model: bool = True) -> Completed:
    """A one-round study requested, approved by two hospitals, run and completed on chain, with the
    coordinator's model files in its model directory."""
    studies = service.exchange.studies
    request = StudyRequest(purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM,
                           hospitals=(actors.hospital.address, actors.hospital2.address),
                           task_code_hash=task_code_hash(TASK), rounds=1)
    study_id, _ = studies.request(actors.researcher, request)
    for hospital in (actors.hospital, actors.hospital2):
        studies.approve(hospital, study_id)
    studies.start(actors.coordinator, study_id)
    for n, hospital in enumerate((actors.hospital, actors.hospital2)):
        contribute(service.exchange, hospital, study_id, 1, keccak(text=f"root {n}"),
                   10 + n, keccak(text=f"update {n}"))
    weights = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(3, dtype=np.float32)]
    digest = weights_hash(weights)
    studies.record_round(actors.coordinator, study_id, 1, digest, [actors.hospital.address, actors.hospital2.address])
    studies.complete(actors.coordinator, study_id, digest, keccak(text="lineage bundle"))
    folder = study_folder(service.settings.model_dir, study_id)
    folder.mkdir(parents=True, exist_ok=True)
    if write_model:
        save_weights(round_model(folder, 1), weights)
        save_weights(final_model(folder), weights)
    return Completed(study_id, "0x" + digest.hex())


def test_the_tasks_carry_the_code_hash_a_study_names(service: Harness, actors: Actors) -> None:
    listed = service.client.get("/v1/tasks", headers=service.bearer(actors.researcher)).json()
    by_code = {t["code"]: t for t in listed}
    assert by_code[TASK]["code_hash"] == "0x" + task_code_hash(TASK).hex()


def test_a_prepared_request_is_the_researchers_own_transaction(service: Harness, actors: Actors) -> None:
    body = {"purpose": "HMB", "kinds": ["ct-sinogram"], "hospitals": [actors.hospital.address],
            "task": TASK, "rounds": 2}
    prepared = service.client.post("/v1/studies/prepare", json=body, headers=service.bearer(actors.researcher))
    assert prepared.status_code == 201, prepared.text
    tx = prepared.json()["prepared"]
    assert (tx["sender"], tx["to"]) == (actors.researcher.address, service.exchange.studies.address)
    chain = service.exchange.chain
    sent = chain.w3.eth.send_raw_transaction(actors.researcher.sign_transaction({
        "to": tx["to"], "data": tx["data"], "chainId": tx["chain_id"], "gas": 1_000_000,
        "nonce": chain.pending_nonce(actors.researcher.address), "gasPrice": chain.w3.eth.gas_price,
    }).raw_transaction)
    assert chain.w3.eth.wait_for_transaction_receipt(sent)["status"] == 1
    study = service.exchange.studies.study(service.exchange.studies.count())
    assert (study.researcher, study.rounds, study.task_code_hash) == (actors.researcher.address, 2,
                                                                       task_code_hash(TASK))


def test_only_a_researcher_prepares_a_request(service: Harness, actors: Actors) -> None:
    body = {"purpose": "GRU", "kinds": ["image"], "hospitals": [actors.hospital.address], "task": TASK, "rounds": 1}
    refused = service.client.post("/v1/studies/prepare", json=body, headers=service.bearer(actors.patients[0]))
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:metai:problem:role-required"


def test_a_request_naming_an_account_without_the_hospital_role_is_refused(service: Harness, actors: Actors) -> None:
    body = {"purpose": "GRU", "kinds": ["image"], "hospitals": [actors.stranger.address], "task": TASK, "rounds": 1}
    refused = service.client.post("/v1/studies/prepare", json=body, headers=service.bearer(actors.researcher))
    assert refused.status_code == 422
    assert actors.stranger.address in refused.json()["detail"]


def test_a_study_shows_its_rounds_with_cohort_counts_and_hashes(service: Harness, actors: Actors) -> None:
    done = _completed_study(service, actors)
    view = service.client.get(f"/v1/studies/{done.study_id}", headers=service.bearer(actors.researcher)).json()
    assert view["status"] == "completed"
    assert view["task"] == TASK
    assert {d["decision"] for d in view["decisions"]} == {"approved"}
    (only_round,) = view["round_records"]
    assert sorted(c["cohort_count"] for c in only_round["contributions"]) == [10, 11]
    assert only_round["model_hash"] == done.final_hash
    assert view["final_model_hash"] == done.final_hash


@pytest.mark.parametrize("who", ["hospital", "coordinator"])
def test_a_named_hospital_and_the_coordinator_see_the_study(service: Harness, actors: Actors, who: str) -> None:
    done = _completed_study(service, actors)
    listed = service.client.get("/v1/studies", headers=service.bearer(getattr(actors, who))).json()
    assert done.study_id in [s["study_id"] for s in listed]


def test_a_hospital_not_named_does_not_see_the_study(service: Harness, actors: Actors) -> None:
    done = _completed_study(service, actors)
    headers = service.bearer(actors.outsider_hospital)
    assert done.study_id not in [s["study_id"] for s in service.client.get("/v1/studies", headers=headers).json()]
    assert service.client.get(f"/v1/studies/{done.study_id}", headers=headers).status_code == 404


def test_only_the_studys_researcher_downloads_the_model(service: Harness, actors: Actors) -> None:
    done = _completed_study(service, actors)
    model = service.client.get(f"/v1/studies/{done.study_id}/model", headers=service.bearer(actors.researcher))
    assert model.status_code == 200
    assert model.headers["x-model-hash"] == done.final_hash
    assert model.content == final_model(study_folder(service.settings.model_dir, done.study_id)).read_bytes()
    refused = service.client.get(f"/v1/studies/{done.study_id}/model", headers=service.bearer(actors.hospital))
    assert refused.status_code == 403


def test_a_model_file_that_is_not_the_anchored_one_is_not_served(service: Harness, actors: Actors) -> None:
    done = _completed_study(service, actors)
    save_weights(final_model(study_folder(service.settings.model_dir, done.study_id)),
                 [np.zeros((2, 3), dtype=np.float32)])
    refused = service.client.get(f"/v1/studies/{done.study_id}/model", headers=service.bearer(actors.researcher))
    assert refused.status_code == 409
    assert refused.json()["type"] == "urn:metai:problem:model-mismatch"


def test_the_lineage_holds_every_anchored_fact_and_the_files_hashes(service: Harness, actors: Actors) -> None:
    done = _completed_study(service, actors)
    response = service.client.get(f"/v1/studies/{done.study_id}/lineage", headers=service.bearer(actors.researcher))
    lineage = response.json()
    assert (lineage["format"], lineage["version"]) == ("metai-study-lineage", 1)
    assert lineage["final_model_matches_chain"] is True
    assert lineage["files"]["final"]["model_hash"] == done.final_hash
    assert [e["event"] for e in lineage["events"]] == [
        "StudyRequested", "StudyApproved", "StudyApproved", "StudyStarted", "ContributionRecorded",
        "ContributionRecorded", "RoundRecorded", "StudyCompleted"]
    tx_hashes = {c["tx_hash"] for c in lineage["study"]["round_records"][0]["contributions"]}
    assert tx_hashes <= {e["tx_hash"] for e in lineage["events"]}


def test_following_a_study_streams_it_as_server_sent_events(service: Harness, actors: Actors) -> None:
    done = _completed_study(service, actors)
    headers = service.bearer(actors.researcher)
    with service.client.stream("GET", f"/v1/studies/{done.study_id}/events", headers=headers) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        text = "".join(stream.iter_text())
    event, _, data = text.partition("data: ")
    assert event.startswith("event: study\n")
    assert json.loads(data.strip())["status"] == "completed"


def test_an_unknown_study_is_not_found(service: Harness, actors: Actors) -> None:
    response = service.client.get("/v1/studies/999", headers=service.bearer(actors.researcher))
    assert response.status_code == 404


def test_a_study_requested_a_moment_ago_is_found_though_the_index_has_not_read_it_yet(
        service_factory: Callable[..., Harness], actors: Actors) -> None:
    slow = service_factory(chain_lag=60)  # the index would not read the chain again for a minute
    headers = slow.bearer(actors.researcher)
    assert slow.client.get("/v1/studies", headers=headers).status_code == 200  # the index has read the chain
    study_id, _ = slow.exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address,),
        task_code_hash=task_code_hash(TASK), rounds=1))
    answer = slow.client.get(f"/v1/studies/{study_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "requested"


def test_the_first_request_after_a_quiet_spell_sees_what_the_chain_did_meanwhile(
        service_factory: Callable[..., Harness], actors: Actors) -> None:
    import time

    service = service_factory(chain_lag=0.5)
    service.services.task_catalogue()  # as after warming up: the view is built on the event loop
    headers = service.bearer(actors.researcher)
    studies = service.exchange.studies
    study_id, _ = studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=task_code_hash(TASK), rounds=1))
    assert service.client.get(f"/v1/studies/{study_id}", headers=headers).json()["status"] == "requested"
    for hospital in (actors.hospital, actors.hospital2):  # while nobody asks the service anything
        studies.approve(hospital, study_id)
    studies.start(actors.coordinator, study_id)
    time.sleep(1.2)  # more than twice the lag: no request kept the index fresh
    view = service.client.get(f"/v1/studies/{study_id}", headers=headers).json()  # one request, not a poll
    assert view["status"] == "running", view
