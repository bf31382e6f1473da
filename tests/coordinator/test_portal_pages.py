"""The portal's pages as the server renders them: who is sent where, what each page shows, the charts,
and pages the content security policy lets run (no inline script or style). The pages' script runs in
a real browser in tests/coordinator/test_portal_browser.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient

from contracts.datause import Kind, Purpose, Scope
from contracts.studies import StudyRequest
from coordinator.models.studies import ContributionPublic, DecisionPublic, RoundPublic, StudyPublic
from coordinator.portal.chart import cohort_chart, metric_charts, nice_ceiling
from coordinator.study_log import HeldOut, RoundRecord, StudyLog, study_folder
from tests.chain_steps import contribute
from tests.conftest import Actors
from tests.coordinator.conftest import Harness

HMB = Scope(purpose=Purpose.HMB)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the pages read what the API reads (tests/coordinator/test_service_db.py covers both)."""
    return f"sqlite:///{tmp_path / 'coordinator.sqlite'}"


def _client(service: Harness, account: LocalAccount) -> TestClient:
    client = service.new_client()
    service.sign_in(account, client)
    return client


def _study(service: Harness, actors: Actors, *, rounds: int = 3, start: bool = True) -> int:
    studies = service.exchange.studies
    study_id, _ = studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=keccak(text="task"), rounds=rounds))
    if start:
        for hospital in (actors.hospital, actors.hospital2):
            studies.approve(hospital, study_id)
        studies.start(actors.coordinator, study_id)
    return study_id


def _no_inline_code(html: str) -> None:
    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts == ['<script src="/static/portal.js" defer>']
    assert "<style" not in html
    assert " style=" not in html
    assert not re.search(r"\son[a-z]+=", html)  # no inline event handlers


@pytest.mark.parametrize("path", ["/", "/consents", "/data-uses", "/studies", "/studies/1", "/approvals"])
def test_a_page_sends_someone_without_a_session_to_sign_in(service: Harness, path: str) -> None:
    response = service.new_client().get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/sign-in?next=" + path.replace("/", "%2F")


def test_the_sign_in_page_runs_only_the_bundled_script(service: Harness) -> None:
    page = service.client.get("/sign-in")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    _no_inline_code(page.text)
    assert service.client.get("/static/portal.js").headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize("target", ["//elsewhere.example/", "https://elsewhere.example/", "/\\elsewhere.example"])
def test_sign_in_goes_on_only_to_a_page_of_this_site(service: Harness, target: str) -> None:
    page = service.client.get("/sign-in", params={"next": target})
    assert 'data-next="/"' in page.text


@pytest.mark.parametrize(("who", "page"), [("patients", "/consents"), ("researcher", "/studies"),
                                           ("hospital", "/approvals")])
def test_each_person_starts_on_their_own_page(service: Harness, actors: Actors, who: str, page: str) -> None:
    account = actors.patients[0] if who == "patients" else getattr(actors, who)
    response = _client(service, account).get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, page)


def test_a_page_tells_its_script_where_the_chain_and_the_contracts_are(service: Harness, actors: Actors) -> None:
    page = _client(service, actors.patients[0]).get("/consents")
    assert f'data-rpc-url="{service.exchange.chain.rpc_url}"' in page.text
    assert f'data-chain-id="{service.exchange.chain.chain_id}"' in page.text
    assert f'data-consent-registry="{service.exchange.consent.address}"' in page.text
    assert f'data-study-registry="{service.exchange.studies.address}"' in page.text
    assert f'data-address="{actors.patients[0].address}"' in page.text
    assert page.headers["cache-control"] == "no-store"
    _no_inline_code(page.text)


def test_the_browsers_rpc_url_is_the_public_one(service_factory: Callable[..., Harness], actors: Actors) -> None:
    public = "https://chain.exchange.example:8443/rpc"
    service = service_factory(public_rpc_url=public)
    page = _client(service, actors.patients[0]).get("/consents")
    assert f'data-rpc-url="{public}"' in page.text
    assert "connect-src 'self' https://chain.exchange.example:8443;" in page.headers["content-security-policy"]


def test_my_consents_are_in_words_and_those_in_force_can_be_withdrawn(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    consent = service.exchange.consent
    consent.grant(patient, Scope(hospital=actors.hospital.address, purpose=Purpose.DS, disease=7), Kind.IMAGE,
                  2**64 - 1)
    consent.grant(patient, HMB, Kind.CT_SINOGRAM, 2**64 - 1)
    consent.revoke(patient, HMB)
    page = _client(service, patient).get("/consents").text
    assert "research on one disease only (disease code 7)" in page
    assert "health, medical or biomedical research" in page
    buttons = re.findall(r'<button type="button" class="revoke"[^>]*>', page)
    assert len(buttons) == 1  # the revoked one has none
    assert 'data-purpose="DS"' in buttons[0]
    assert 'data-disease="7"' in buttons[0]
    assert f'data-hospital="{actors.hospital.address}"' in buttons[0]
    assert "cancelSignatures" not in page  # plain words, not the contract's function names
    assert "Cancel my outstanding signatures" in page


def test_who_used_my_data_says_there_is_nothing_yet(service: Harness, actors: Actors) -> None:
    page = _client(service, actors.patients[0]).get("/data-uses").text
    assert 'id="no-uses"' in page
    assert 'href="/v1/me/receipt.html"' in page


def test_a_hospital_sees_the_studies_that_wait_for_its_decision(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors, start=False)
    service.exchange.studies.approve(actors.hospital2, study_id)
    waiting = _client(service, actors.hospital).get("/approvals").text
    assert re.search(rf'<section class="card awaiting" data-study-id="{study_id}">', waiting)
    assert f"metai-node approve {study_id}" in waiting
    decided = _client(service, actors.hospital2).get("/approvals").text
    assert 'id="none-waiting"' in decided
    outsider = _client(service, actors.outsider_hospital).get("/approvals").text
    assert 'id="none-waiting"' in outsider


def test_a_researcher_lists_their_studies(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    page = _client(service, actors.researcher).get("/studies").text
    assert f'<a href="/studies/{study_id}">Study {study_id}</a>' in page
    assert 'id="my-studies"' in page


def _with_rounds(service: Harness, actors: Actors) -> int:
    """A running three-round study with two rounds anchored and the coordinator's metrics for them."""
    studies = service.exchange.studies
    study_id = _study(service, actors)
    both = [actors.hospital.address, actors.hospital2.address]
    for round_, counts in ((1, (12, 7)), (2, (11, 7))):
        for hospital, count in zip((actors.hospital, actors.hospital2), counts, strict=True):
            contribute(service.exchange, hospital, study_id, round_, keccak(text=f"root {round_} {count}"), count,
                               keccak(text=f"update {round_}"))
        studies.record_round(actors.coordinator, study_id, round_, keccak(text=f"model {round_}"), both)
    folder = study_folder(service.settings.model_dir, study_id)
    folder.mkdir(parents=True)
    log = StudyLog(study_id=study_id, task="t", held_out=HeldOut(examples=64, seed=1))
    for round_, (loss, accuracy) in ((1, (0.69, 0.55)), (2, (0.52, 0.71))):
        log.rounds.append(RoundRecord(round=round_, contributors=both, cohort_counts=[12, 7], refused=[],
                                      synthetic_counts={}, model_hash="0x", block=None, privacy=None, seconds=1.0,
                                      server_seconds={}, node_seconds={},
                                      eval={"loss": loss, "accuracy": accuracy, "examples": 64}))
    log.write(folder)
    return study_id


def test_the_study_page_charts_each_rounds_cohorts_and_metrics(service: Harness, actors: Actors) -> None:
    study_id = _with_rounds(service, actors)
    page = _client(service, actors.researcher).get(f"/studies/{study_id}")
    assert page.status_code == 200
    _no_inline_code(page.text)
    bars = re.findall(r'<rect class="bar series-(\d)"[^>]*><title>([^<]*)</title>', page.text)
    assert len(bars) == 4
    assert ("0", f"round 1: 12 records at {actors.hospital.address}") in bars
    assert ("1", f"round 2: 7 records at {actors.hospital2.address}") in bars
    assert 'aria-label="Held-out accuracy, round by round"' in page.text
    assert 'aria-label="Held-out loss, round by round"' in page.text
    assert "Held-out examples" not in page.text  # a count, not a measure of the model
    assert 'data-status="running"' in page.text


def test_the_rounds_alone_are_the_fragment_the_page_reloads_live(service: Harness, actors: Actors) -> None:
    study_id = _with_rounds(service, actors)
    fragment = _client(service, actors.researcher).get(f"/studies/{study_id}/rounds").text
    assert fragment.lstrip().startswith("<h2>Rounds: 2 of 3 completed</h2>")
    assert "<html" not in fragment
    assert 'id="round-table"' in fragment


def test_a_study_i_have_no_part_in_is_a_page_saying_it_is_not_found(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    page = _client(service, actors.outsider_hospital).get(f"/studies/{study_id}")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert f"you have no part in a study {study_id}" in page.text


def _view(rounds: list[tuple[int, list[int], dict[str, float] | None]], planned: int = 4) -> StudyPublic:
    hospitals = ["0x" + f"{i + 1:040x}" for i in range(2)]
    return StudyPublic(
        study_id=1, status="running", researcher="0x" + "ab" * 20, purpose="HMB", disease=0, purpose_words="p",
        kinds=["image"], task=None, task_code_hash="0x" + "00" * 32, rounds=planned, rounds_completed=len(rounds),
        privacy_budget_epsilon=0.0, privacy_spent_epsilon=0.0,
        decisions=[DecisionPublic(hospital=h, decision="approved") for h in hospitals], requested_at_block=1,
        started_at_block=2, final_model_hash=None, completed_tx=None,
        round_records=[RoundPublic(
            round=r, model_hash=None, block=None, tx_hash=None, privacy_spent_milli_epsilon=None, metrics=metrics,
            contributions=[ContributionPublic(hospital=h, cohort_root="0x" + "11" * 32, cohort_count=c,
                                              update_hash="0x" + "22" * 32, block=3, tx_hash="0x" + "33" * 32)
                           for h, c in zip(hospitals, counts, strict=True)])
            for r, counts, metrics in rounds])


@pytest.mark.parametrize(("value", "expected"), [(0, 1), (1, 1), (7, 10), (12, 20), (21, 25), (180, 200),
                                                 (0.3, 0.5), (1000, 1000)])
def test_an_axis_ends_at_a_round_number(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)


def test_bars_are_as_tall_as_their_cohorts_on_a_shared_scale() -> None:
    chart = cohort_chart(_view([(1, [20, 10], None), (2, [5, 0], None)]))
    heights = [bar.height for bar in chart.bars]
    full = chart.bottom - chart.top  # 20 records reach the top of the 0..20 axis
    assert heights == pytest.approx([full, full / 2, full / 4, 0.0])
    assert [bar.series for bar in chart.bars] == [0, 1, 0, 1]
    assert [t.label for t in chart.ticks] == ["0", "5", "10", "15", "20"]
    assert [x.label for x in chart.x_labels] == ["1", "2", "3", "4"]  # every planned round has a slot


def test_a_fraction_is_plotted_on_zero_to_one_and_missing_rounds_are_skipped() -> None:
    charts = metric_charts(_view([(1, [1, 1], {"accuracy": 0.5, "examples": 64}), (2, [1, 1], None),
                                  (3, [1, 1], {"accuracy": 1.0, "examples": 64})]))
    (accuracy,) = charts
    assert accuracy.title == "Held-out accuracy, round by round"
    assert [t.label for t in accuracy.ticks] == ["0", "0.25", "0.5", "0.75", "1"]
    assert len(accuracy.points) == 2
    assert accuracy.points[1].y == pytest.approx(accuracy.top)
