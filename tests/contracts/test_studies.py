"""StudyRegistry against a real Anvil: the life of a study and each refusal along it."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak

from contracts.datause import Kind, Purpose
from contracts.events import (
    ContributionRecorded,
    RoundRecorded,
    StudyApproved,
    StudyCompleted,
    StudyDeclined,
    StudyRequested,
    StudyStarted,
)
from contracts.exchange import Exchange
from contracts.merkle import MerkleTree, leaf_hash
from contracts.roles import Role
from contracts.studies import Decision, StudyRequest, StudyStatus
from tests.chain_steps import contribute, hospital_dataset

TASK = keccak(text="metai task: lesion detection from sinograms v1")
ROOT = keccak(text="cohort root")
UPDATE = keccak(text="update")


@pytest.fixture
def request_(actors) -> StudyRequest:
    return StudyRequest(
        purpose=Purpose.DS, disease=1234, kinds=Kind.CT_SINOGRAM,
        hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=TASK, rounds=2, privacy_budget=3000,
    )


@pytest.fixture
def study(exchange: Exchange, actors, request_) -> int:
    study_id, _ = exchange.studies.request(actors.researcher, request_)
    return study_id


@pytest.fixture
def running(exchange: Exchange, actors, study) -> int:
    exchange.studies.approve(actors.hospital, study)
    exchange.studies.approve(actors.hospital2, study)
    exchange.studies.start(actors.coordinator, study)
    return study


def contribute_both(exchange: Exchange, actors, study: int, round_: int) -> None:
    for h in (actors.hospital, actors.hospital2):
        contribute(exchange, h, study, round_, ROOT, 10, UPDATE)


# ---------------------------------------------------------------- happy path, event by event


def test_request_emits_event_and_stores_study(exchange: Exchange, actors, request_) -> None:
    study_id, tx = exchange.studies.request(actors.researcher, request_)
    event = tx.event(StudyRequested)
    assert (event.study_id, event.researcher, event.purpose, event.disease, event.kinds) == (
        1, actors.researcher.address, Purpose.DS, 1234, Kind.CT_SINOGRAM)
    assert (event.hospitals, event.task_code_hash, event.rounds, event.privacy_budget) == (
        request_.hospitals, TASK, 2, 3000)
    record = exchange.studies.study(study_id)
    assert (record.status, record.rounds, record.task_code_hash) == (StudyStatus.REQUESTED, 2, TASK)
    assert exchange.studies.decision_of(study_id, actors.hospital.address) == Decision.PENDING


def test_approve_emits_event(exchange: Exchange, actors, study) -> None:
    tx = exchange.studies.approve(actors.hospital, study)
    assert (tx.event(StudyApproved).study_id, tx.event(StudyApproved).hospital) == (study, actors.hospital.address)
    assert exchange.studies.decision_of(study, actors.hospital.address) == Decision.APPROVED


def test_decline_emits_event_and_blocks_the_study(exchange: Exchange, actors, study, expect_revert) -> None:
    tx = exchange.studies.decline(actors.hospital2, study)
    assert tx.event(StudyDeclined).hospital == actors.hospital2.address
    assert exchange.studies.study(study).status == StudyStatus.DECLINED
    with expect_revert("StudyRegistryUnexpectedStatus", status=StudyStatus.DECLINED, expected=StudyStatus.REQUESTED):
        exchange.studies.start(actors.coordinator, study)


def test_start_emits_event(exchange: Exchange, actors, study) -> None:
    exchange.studies.approve(actors.hospital, study)
    exchange.studies.approve(actors.hospital2, study)
    tx = exchange.studies.start(actors.coordinator, study)
    assert tx.event(StudyStarted).coordinator == actors.coordinator.address
    assert exchange.studies.study(study).status == StudyStatus.RUNNING


def test_contribution_emits_event_and_is_stored(exchange: Exchange, actors, running) -> None:
    tx = contribute(exchange, actors.hospital, running, 1, ROOT, 17, UPDATE)
    event = tx.event(ContributionRecorded)
    assert (event.study_id, event.round, event.hospital, event.cohort_root, event.cohort_count, event.update_hash) == (
        running, 1, actors.hospital.address, ROOT, 17, UPDATE)
    assert event.cohort_block == tx.block_number - 1  # the latest block when it was sent (tests/chain_steps.py)
    assert event.dataset_ids == (hospital_dataset(exchange, actors.hospital),)
    assert exchange.studies.cohort_root_of(running, 1, actors.hospital.address) == ROOT
    stored = exchange.studies.contribution_of(running, 1, actors.hospital.address)
    assert stored == event
    assert stored.block_number == tx.block_number


def test_round_and_completion_emit_events(exchange: Exchange, actors, running) -> None:
    contribute_both(exchange, actors, running, 1)
    model1 = keccak(text="model round 1")
    tx = exchange.studies.record_round(actors.coordinator, running, 1, model1,
                                       [actors.hospital.address, actors.hospital2.address], privacy_spent=1000)
    event = tx.event(RoundRecorded)
    assert (event.round, event.model_hash, set(event.contributors), event.privacy_spent) == (
        1, model1, {actors.hospital.address, actors.hospital2.address}, 1000)
    assert exchange.studies.round_model_hash(running, 1) == model1
    final = keccak(text="final model")
    tx = exchange.studies.complete(actors.coordinator, running, final, keccak(text="lineage bundle"))
    assert (tx.event(StudyCompleted).final_model_hash, tx.event(StudyCompleted).rounds) == (final, 1)
    record = exchange.studies.study(running)
    assert (record.status, record.final_model_hash, record.privacy_spent) == (StudyStatus.COMPLETED, final, 1000)


def test_round_may_aggregate_a_subset_of_hospitals(exchange: Exchange, actors, running) -> None:
    contribute(exchange, actors.hospital, running, 1, ROOT, 3, UPDATE)  # hospital2 failed this round
    tx = exchange.studies.record_round(actors.coordinator, running, 1, keccak(b"m"), [actors.hospital.address])
    assert tx.event(RoundRecorded).contributors == (actors.hospital.address,)


def test_cohort_proof_view(exchange: Exchange, actors, running) -> None:
    tree = MerkleTree(leaf_hash(["uint256"], [i]) for i in range(6))
    contribute(exchange, actors.hospital, running, 1, tree.root, 6, UPDATE)
    leaf = tree.leaves[4]
    assert exchange.studies.in_cohort(running, 1, actors.hospital.address, leaf, tree.proof(leaf))
    assert not exchange.studies.in_cohort(running, 1, actors.hospital.address, leaf_hash(["uint256"], [99]),
                                          tree.proof(leaf))
    assert not exchange.studies.in_cohort(running, 1, actors.hospital2.address, leaf, tree.proof(leaf))


# ---------------------------------------------------------------- refusals


def test_request_by_non_researcher_is_refused(exchange: Exchange, actors, request_, expect_revert) -> None:
    with expect_revert("AccessControlUnauthorizedAccount", account=actors.hospital.address,
                       neededRole=Role.RESEARCHER.value):
        exchange.studies.request(actors.hospital, request_)


def test_request_naming_a_non_hospital_is_refused(exchange: Exchange, actors, request_, expect_revert) -> None:
    bad = StudyRequest(**{**request_.__dict__, "hospitals": (actors.hospital.address, actors.stranger.address)})
    with expect_revert("StudyRegistryNotAHospital", hospital=actors.stranger.address):
        exchange.studies.request(actors.researcher, bad)


def test_request_naming_a_hospital_twice_is_refused(exchange: Exchange, actors, request_, expect_revert) -> None:
    bad = StudyRequest(**{**request_.__dict__, "hospitals": (actors.hospital.address, actors.hospital.address)})
    with expect_revert("StudyRegistryDuplicateHospital", hospital=actors.hospital.address):
        exchange.studies.request(actors.researcher, bad)


def test_approving_a_study_not_addressed_to_the_hospital_is_refused(exchange: Exchange, actors, study,
                                                                     expect_revert) -> None:
    with expect_revert("StudyRegistryNotInvited", studyId=study, hospital=actors.outsider_hospital.address):
        exchange.studies.approve(actors.outsider_hospital, study)


def test_deciding_twice_is_refused(exchange: Exchange, actors, study, expect_revert) -> None:
    exchange.studies.approve(actors.hospital, study)
    with expect_revert("StudyRegistryAlreadyDecided", hospital=actors.hospital.address, decision=Decision.APPROVED):
        exchange.studies.approve(actors.hospital, study)


def test_starting_before_all_approvals_is_refused(exchange: Exchange, actors, study, expect_revert) -> None:
    exchange.studies.approve(actors.hospital, study)
    with expect_revert("StudyRegistryNotApproved", studyId=study, approvals=1, required=2):
        exchange.studies.start(actors.coordinator, study)


def test_start_by_non_coordinator_is_refused(exchange: Exchange, actors, study, expect_revert) -> None:
    with expect_revert("AccessControlUnauthorizedAccount", account=actors.researcher.address,
                 neededRole=Role.COORDINATOR.value):
        exchange.studies.start(actors.researcher, study)


def test_contribution_to_a_study_not_started_is_refused(exchange: Exchange, actors, study, expect_revert) -> None:
    exchange.studies.approve(actors.hospital, study)
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study, status=StudyStatus.REQUESTED,
                 expected=StudyStatus.RUNNING):
        contribute(exchange, actors.hospital, study, 1, ROOT, 1, UPDATE)


def test_contribution_from_a_hospital_not_in_the_study_is_refused(exchange: Exchange, actors, running,
                                                                   expect_revert) -> None:
    with expect_revert("StudyRegistryNotParticipant", studyId=running, hospital=actors.outsider_hospital.address,
                 decision=Decision.NONE):
        contribute(exchange, actors.outsider_hospital, running, 1, ROOT, 1, UPDATE)


def test_contribution_to_a_closed_round_is_refused(exchange: Exchange, actors, running, expect_revert) -> None:
    with expect_revert("StudyRegistryWrongRound", studyId=running, round=2, expected=1):
        contribute(exchange, actors.hospital, running, 2, ROOT, 1, UPDATE)


def test_second_contribution_to_a_round_is_refused(exchange: Exchange, actors, running, expect_revert) -> None:
    contribute(exchange, actors.hospital, running, 1, ROOT, 1, UPDATE)
    with expect_revert("StudyRegistryAlreadyContributed", studyId=running, round=1, hospital=actors.hospital.address):
        contribute(exchange, actors.hospital, running, 1, ROOT, 1, UPDATE)


def test_empty_cohort_is_refused(exchange: Exchange, actors, running, expect_revert) -> None:
    with expect_revert("StudyRegistryInvalidCohort", cohortRoot=ROOT, cohortCount=0):
        contribute(exchange, actors.hospital, running, 1, ROOT, 0, UPDATE)


def test_round_without_the_named_contribution_is_refused(exchange: Exchange, actors, running, expect_revert) -> None:
    contribute(exchange, actors.hospital, running, 1, ROOT, 1, UPDATE)
    with expect_revert("StudyRegistryMissingContribution", studyId=running, round=1, hospital=actors.hospital2.address):
        exchange.studies.record_round(actors.coordinator, running, 1, keccak(b"m"),
                                      [actors.hospital.address, actors.hospital2.address])


def test_privacy_budget_is_enforced(exchange: Exchange, actors, running, expect_revert) -> None:
    contribute_both(exchange, actors, running, 1)
    hospitals = [actors.hospital.address, actors.hospital2.address]
    exchange.studies.record_round(actors.coordinator, running, 1, keccak(b"m1"), hospitals, privacy_spent=2000)
    contribute_both(exchange, actors, running, 2)
    with expect_revert("StudyRegistryPrivacyBudgetExceeded", studyId=running, spent=2000, requested=1500, budget=3000):
        exchange.studies.record_round(actors.coordinator, running, 2, keccak(b"m2"), hospitals, privacy_spent=1500)


def test_no_round_beyond_the_requested_number(exchange: Exchange, actors, running, expect_revert) -> None:
    hospitals = [actors.hospital.address, actors.hospital2.address]
    for r in (1, 2):
        contribute_both(exchange, actors, running, r)
        exchange.studies.record_round(actors.coordinator, running, r, keccak(bytes([r])), hospitals)
    with expect_revert("StudyRegistryNoOpenRound", studyId=running, rounds=2):
        contribute(exchange, actors.hospital, running, 3, ROOT, 1, UPDATE)


def test_second_completion_is_refused(exchange: Exchange, actors, running, expect_revert) -> None:
    contribute_both(exchange, actors, running, 1)
    exchange.studies.record_round(actors.coordinator, running, 1, keccak(b"m"),
                                  [actors.hospital.address, actors.hospital2.address])
    exchange.studies.complete(actors.coordinator, running, keccak(b"final"), keccak(text="lineage bundle"))
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=running, status=StudyStatus.COMPLETED,
                 expected=StudyStatus.RUNNING):
        exchange.studies.complete(actors.coordinator, running, keccak(b"final again"), keccak(text="lineage bundle"))


def test_completion_without_any_round_is_refused(exchange: Exchange, actors, running, expect_revert) -> None:
    with expect_revert("StudyRegistryWrongRound", studyId=running, round=0, expected=1):
        exchange.studies.complete(actors.coordinator, running, keccak(b"final"), keccak(text="lineage bundle"))


def test_unknown_study_is_refused(exchange: Exchange, expect_revert) -> None:
    with expect_revert("StudyRegistryUnknownStudy", studyId=42):
        exchange.studies.study(42)
