"""The coordinator's chain index replays studies and consents from events as the contracts hold them."""

from __future__ import annotations

from eth_utils.crypto import keccak

from contracts.datause import Kind, Purpose, Scope
from contracts.enums import Decision
from contracts.exchange import Exchange
from contracts.studies import StudyRequest
from coordinator.chain_index import ChainIndex
from tests.chain_steps import contribute
from tests.conftest import Actors


def _assert_same(index: ChainIndex, exchange: Exchange, study_id: int) -> None:
    state = index.study(study_id)
    record = exchange.studies.study(study_id)
    assert state is not None
    assert (state.status, state.rounds_completed, state.privacy_spent, state.researcher) == (
        record.status, record.rounds_completed, record.privacy_spent, record.researcher)
    assert state.final_model_hash == (record.final_model_hash if any(record.final_model_hash) else None)
    assert state.decisions == {h: exchange.studies.decision_of(study_id, h) for h in state.request.hospitals}


def test_a_studys_replayed_state_equals_the_contracts_at_every_step(exchange: Exchange, actors: Actors) -> None:
    index = ChainIndex(exchange, max_lag=0)
    studies = exchange.studies
    study_id, _ = studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.IMAGE, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=keccak(text="t"), rounds=2, privacy_budget=5000))
    h1, h2 = actors.hospital.address, actors.hospital2.address
    steps = [
        lambda: studies.approve(actors.hospital, study_id),
        lambda: studies.approve(actors.hospital2, study_id),
        lambda: studies.start(actors.coordinator, study_id),
        lambda: contribute(exchange, actors.hospital, study_id, 1, keccak(text="r"), 3, keccak(text="u")),
        lambda: studies.record_round(actors.coordinator, study_id, 1, keccak(text="m1"), [h1], 700),
        lambda: contribute(exchange, actors.hospital2, study_id, 2, keccak(text="r2"), 4, keccak(text="u2")),
        lambda: studies.record_round(actors.coordinator, study_id, 2, keccak(text="m2"), [h2], 800),
        lambda: studies.complete(actors.coordinator, study_id, keccak(text="final"), keccak(text="lineage bundle")),
    ]
    _assert_same(index, exchange, study_id)
    for step in steps:
        step()
        _assert_same(index, exchange, study_id)


def test_a_declined_study_is_declined_in_the_index(exchange: Exchange, actors: Actors) -> None:
    index = ChainIndex(exchange, max_lag=0)
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.GRU, kinds=Kind.IMAGE, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=keccak(text="t"), rounds=1))
    exchange.studies.approve(actors.hospital, study_id)
    exchange.studies.decline(actors.hospital2, study_id)
    _assert_same(index, exchange, study_id)
    state = index.study(study_id)
    assert state is not None
    assert state.decisions[actors.hospital2.address] == Decision.DECLINED


def test_a_patients_consent_events_are_theirs_alone_and_in_order(exchange: Exchange, actors: Actors) -> None:
    index = ChainIndex(exchange, max_lag=0)
    patient, other = actors.patients[0], actors.patients[1]
    scope = Scope(purpose=Purpose.GRU)
    exchange.consent.grant(patient, scope, Kind.IMAGE, 2**64 - 1)
    exchange.consent.grant(other, scope, Kind.IMAGE, 2**64 - 1)
    exchange.consent.revoke(patient, scope)
    assert [e.name for e in index.consent_events(patient.address)] == ["ConsentGranted", "ConsentRevoked"]
    assert [e.name for e in index.consent_events(other.address)] == ["ConsentGranted"]


def test_an_answer_lags_the_chain_by_at_most_max_lag(exchange: Exchange, actors: Actors) -> None:
    index = ChainIndex(exchange, max_lag=3600)
    patient = actors.patients[0]
    assert index.consent_events(patient.address) == []
    exchange.consent.grant(patient, Scope(purpose=Purpose.GRU), Kind.IMAGE, 2**64 - 1)
    assert index.consent_events(patient.address) == []  # read less than max_lag ago: not read again
    index.sync(force=True)
    assert len(index.consent_events(patient.address)) == 1


def test_the_event_loop_never_reads_the_chain_but_a_worker_thread_does(exchange: Exchange, actors: Actors) -> None:
    import asyncio
    import time

    index = ChainIndex(exchange, max_lag=0.05)
    patient = actors.patients[0]
    before = len(index.consent_events(patient.address))
    exchange.consent.grant(patient, Scope(purpose=Purpose.GRU), Kind.IMAGE, 2**64 - 1)
    time.sleep(0.1)  # the index is now older than its lag

    async def on_the_loop() -> int:
        return len(index.consent_events(patient.address))

    assert asyncio.run(on_the_loop()) == before  # a read here would stall every request in flight
    assert len(index.consent_events(patient.address)) == before + 1
