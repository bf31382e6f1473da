"""What the contracts enforce since the outside audit of issue 14, each found by a real transaction.

Every case here sends transactions to a fresh snapshot of the session deployment and states the
finding it closes: a hospital that lost its role being aggregated, a cohort without the block its
consents were read at or the datasets it draws from, a researcher approving its own study, one
admin key with no transfer safeguard, a dataset root registered twice, and the edge cases the
NatSpec review found (a study stuck in Requested, the wrong "expected" round after the last one,
the privacy sum overflowing 64 bits, the round counter at 65535, a signature recovering no signer).
"""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.events import ContributionRecorded, StudyCompleted, StudyWithdrawn
from contracts.exchange import Exchange
from contracts.roles import Role
from contracts.studies import StudyRequest, StudyStatus
from deploy.devchain import advance_time, rpc, set_storage_at
from tests.chain_steps import contribute, hospital_dataset
from tests.conftest import Actors

TASK = keccak(text="trust gaps task")
ROOT = keccak(text="trust gaps cohort")
UPDATE = keccak(text="trust gaps update")
MODEL = keccak(text="trust gaps model")
LINEAGE = keccak(text="trust gaps lineage")
ADMIN_ROLE = bytes(32)


def _request(actors: Actors, **change: object) -> StudyRequest:
    fields: dict[str, object] = {"purpose": Purpose.HMB, "kinds": Kind.CT_SINOGRAM,
                                 "hospitals": (actors.hospital.address, actors.hospital2.address),
                                 "task_code_hash": TASK, "rounds": 2, "privacy_budget": 0}
    fields.update(change)
    return StudyRequest(**fields)  # type: ignore[arg-type]


def _running(exchange: Exchange, actors: Actors, **change: object) -> int:
    study_id, _ = exchange.studies.request(actors.researcher, _request(actors, **change))
    for h in (actors.hospital, actors.hospital2):
        exchange.studies.approve(h, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return study_id


# ---------------------------------------------------------------- roles at the moment of every action


def test_a_hospital_that_lost_its_role_after_contributing_is_not_aggregated(
        exchange: Exchange, actors: Actors, expect_revert) -> None:
    """Finding: the coordinator recorded a round with a hospital the admin had removed."""
    study_id = _running(exchange, actors)
    contribute(exchange, actors.hospital, study_id, 1, ROOT, 5, UPDATE)
    contribute(exchange, actors.hospital2, study_id, 1, ROOT, 6, UPDATE)
    exchange.roles.revoke(actors.admin, Role.HOSPITAL, actors.hospital2.address)
    with expect_revert("StudyRegistryNotAHospital", hospital=actors.hospital2.address):
        exchange.studies.record_round(actors.coordinator, study_id, 1, MODEL,
                                      [actors.hospital.address, actors.hospital2.address])
    exchange.studies.record_round(actors.coordinator, study_id, 1, MODEL, [actors.hospital.address])
    assert exchange.studies.study(study_id).rounds_completed == 1


# ---------------------------------------------------------------- the cohort block


def test_the_cohort_block_lies_between_the_round_opening_and_the_contribution(
        exchange: Exchange, actors: Actors, expect_revert) -> None:
    """Finding: the block the cohort was computed at was neither stored nor emitted."""
    study_id = _running(exchange, actors)
    opened = exchange.studies.study(study_id).round_opened_at_block
    assert opened == exchange.studies.study(study_id).started_at_block
    dataset = hospital_dataset(exchange, actors.hospital)
    args = (actors.hospital, study_id, 1, ROOT, 5)
    with expect_revert("StudyRegistryCohortBlockOutOfRange", cohortBlock=opened - 1, openedAt=opened):
        exchange.studies.contribute(*args, opened - 1, [dataset], UPDATE)
    latest = exchange.chain.block_number
    with expect_revert("StudyRegistryCohortBlockOutOfRange", cohortBlock=latest + 5, openedAt=opened):
        exchange.studies.contribute(*args, latest + 5, [dataset], UPDATE)
    tx = exchange.studies.contribute(*args, opened, [dataset], UPDATE)
    event = tx.event(ContributionRecorded)
    assert (event.cohort_block, event.dataset_ids, event.cohort_count) == (opened, (dataset,), 5)
    assert exchange.studies.cohort_root_of(study_id, 1, actors.hospital.address) == ROOT
    assert exchange.studies.contribution_of(study_id, 1, actors.hospital.address) == event


def test_recording_a_round_opens_the_next_at_its_own_block(exchange: Exchange, actors: Actors,
                                                          expect_revert) -> None:
    """A round-2 cohort read before round 1 was recorded relied on consents of the round before."""
    study_id = _running(exchange, actors)
    contribute(exchange, actors.hospital, study_id, 1, ROOT, 5, UPDATE)
    recorded = exchange.studies.record_round(actors.coordinator, study_id, 1, MODEL, [actors.hospital.address])
    assert exchange.studies.study(study_id).round_opened_at_block == recorded.block_number
    dataset = hospital_dataset(exchange, actors.hospital)
    with expect_revert("StudyRegistryCohortBlockOutOfRange", cohortBlock=recorded.block_number - 1,
                       openedAt=recorded.block_number):
        exchange.studies.contribute(actors.hospital, study_id, 2, ROOT, 5, recorded.block_number - 1, [dataset],
                                    UPDATE)
    exchange.studies.contribute(actors.hospital, study_id, 2, ROOT, 5, recorded.block_number, [dataset], UPDATE)


# ---------------------------------------------------------------- cohorts tied to registered datasets


def test_a_contribution_names_only_datasets_its_hospital_registered(exchange: Exchange, actors: Actors,
                                                                    expect_revert) -> None:
    """Finding: of a demo round's 81 cohort records only 1 lay in a dataset registered on chain."""
    study_id = _running(exchange, actors)
    own = hospital_dataset(exchange, actors.hospital)
    other = hospital_dataset(exchange, actors.hospital2)
    second, _ = exchange.datasets.register(actors.hospital, keccak(text="second"), 3, Kind.CT_SINOGRAM, "CT",
                                           synthetic=True)
    block = exchange.chain.block_number
    studies = exchange.studies
    base = (study_id, 1, ROOT, 5, block)

    def send(datasets: list[int]) -> None:
        fn = studies.contract.functions.contribute(*base, datasets, UPDATE)
        exchange.chain.transact(actors.hospital, fn)

    with expect_revert("StudyRegistryNoDatasets"):
        send([])
    with expect_revert("StudyRegistryForeignDataset", datasetId=other, hospital=actors.hospital.address):
        send([own, other] if own < other else [other, own])
    unknown = exchange.datasets.count() + 1
    with expect_revert("StudyRegistryForeignDataset", datasetId=unknown, hospital=actors.hospital.address):
        send([own, unknown])
    with expect_revert("StudyRegistryUnsortedDatasets", datasetId=own):
        send([second, own])
    with expect_revert("StudyRegistryUnsortedDatasets", datasetId=own):
        send([own, own])
    send([own, second])
    assert studies.contribution_of(study_id, 1, actors.hospital.address).dataset_ids == (own, second)


# ---------------------------------------------------------------- separation of duties


def test_a_researcher_cannot_name_itself_among_the_hospitals(exchange: Exchange, actors: Actors,
                                                             expect_revert) -> None:
    """Finding: one account holding both roles approved its own study."""
    exchange.roles.grant(actors.admin, Role.HOSPITAL, actors.researcher.address)  # allowed: see ConsortiumRoles
    with expect_revert("StudyRegistryResearcherIsHospital", researcher=actors.researcher.address):
        exchange.studies.request(actors.researcher, _request(
            actors, hospitals=(actors.hospital.address, actors.researcher.address)))
    study_id, _ = exchange.studies.request(actors.researcher, _request(actors))
    assert exchange.studies.hospitals_of(study_id) == [actors.hospital.address, actors.hospital2.address]


@pytest.mark.parametrize(("first", "second"), [(Role.COORDINATOR, Role.HOSPITAL), (Role.COORDINATOR, Role.RESEARCHER),
                                               (Role.HOSPITAL, Role.COORDINATOR),
                                               (Role.RESEARCHER, Role.COORDINATOR)])
def test_the_coordinator_role_is_held_alone(exchange: Exchange, actors: Actors, expect_revert, first: Role,
                                            second: Role) -> None:
    """The coordinator starts studies and records hospitals' rounds: it is never a hospital or a researcher."""
    account = actors.stranger.address
    exchange.roles.grant(actors.admin, first, account)
    with expect_revert("ConsortiumRolesIncompatibleRoles", account=account, role=second.value, held=first.value):
        exchange.roles.grant(actors.admin, second, account)
    assert not exchange.roles.has(second, account)


# ---------------------------------------------------------------- the admin seat


def test_the_admin_seat_moves_in_two_steps_after_the_delay(exchange: Exchange, actors: Actors, anvil,
                                                          expect_revert) -> None:
    """Finding: one key administered every role with no transfer safeguard."""
    roles = exchange.roles.contract
    chain = exchange.chain
    new_admin = actors.stranger
    with expect_revert("AccessControlEnforcedDefaultAdminRules"):
        chain.transact(actors.admin, roles.functions.grantRole(ADMIN_ROLE, new_admin.address))
    delay = roles.functions.defaultAdminDelay().call()
    assert delay == 2 * 24 * 3600  # deploy.deployer.ADMIN_DELAY
    chain.transact(actors.admin, roles.functions.beginDefaultAdminTransfer(new_admin.address))
    with expect_revert("AccessControlEnforcedDefaultAdminDelay"):
        chain.transact(new_admin, roles.functions.acceptDefaultAdminTransfer())
    advance_time(anvil.rpc_url, delay + 1)
    chain.transact(new_admin, roles.functions.acceptDefaultAdminTransfer())
    assert exchange.roles.has(Role.CONSORTIUM_ADMIN, new_admin.address)
    assert not exchange.roles.has(Role.CONSORTIUM_ADMIN, actors.admin.address)
    with expect_revert("AccessControlUnauthorizedAccount", account=actors.admin.address, neededRole=ADMIN_ROLE):
        exchange.roles.grant(actors.admin, Role.HOSPITAL, actors.patients[0].address)


# ---------------------------------------------------------------- a root registered once


def test_another_hospital_cannot_register_a_root_already_registered(exchange: Exchange, actors: Actors,
                                                                    expect_revert) -> None:
    """Finding: a second hospital registered a root a first hospital had registered."""
    root = keccak(text="one set of records")
    first, _ = exchange.datasets.register(actors.hospital, root, 4, Kind.CT_SINOGRAM, "CT", synthetic=True)
    with expect_revert("DatasetRegistryDuplicateRoot", hospital=actors.hospital.address, merkleRoot=root,
                       datasetId=first):
        exchange.datasets.register(actors.hospital2, root, 4, Kind.CT_SINOGRAM, "CT", synthetic=True)
    assert exchange.datasets.id_of(root) == first
    assert exchange.datasets.hospital_of(first) == actors.hospital.address


# ---------------------------------------------------------------- edge cases the NatSpec review found


def test_a_study_a_hospital_never_decides_on_can_be_withdrawn(exchange: Exchange, actors: Actors,
                                                             expect_revert) -> None:
    """A named hospital that lost its role can never approve: the researcher withdraws the study."""
    study_id, _ = exchange.studies.request(actors.researcher, _request(actors))
    exchange.studies.approve(actors.hospital, study_id)
    exchange.roles.revoke(actors.admin, Role.HOSPITAL, actors.hospital2.address)
    other = actors.patients[0]
    exchange.roles.grant(actors.admin, Role.RESEARCHER, other.address)
    with expect_revert("StudyRegistryNotResearcher", studyId=study_id, caller=other.address):
        exchange.studies.withdraw(other, study_id)
    tx = exchange.studies.withdraw(actors.researcher, study_id)
    assert tx.event(StudyWithdrawn).researcher == actors.researcher.address
    assert exchange.studies.study(study_id).status == StudyStatus.WITHDRAWN
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=StudyStatus.WITHDRAWN,
                       expected=StudyStatus.REQUESTED):
        exchange.studies.withdraw(actors.researcher, study_id)
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=StudyStatus.WITHDRAWN,
                       expected=StudyStatus.REQUESTED):
        exchange.studies.start(actors.coordinator, study_id)


def test_a_running_study_cannot_be_withdrawn(exchange: Exchange, actors: Actors, expect_revert) -> None:
    study_id = _running(exchange, actors)
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=StudyStatus.RUNNING,
                       expected=StudyStatus.REQUESTED):
        exchange.studies.withdraw(actors.researcher, study_id)


def test_privacy_spending_near_two_to_the_64_is_refused_by_name(exchange: Exchange, actors: Actors,
                                                                expect_revert) -> None:
    """spent + requested overflowed uint64 and reverted with a bare panic instead of the budget error."""
    top = 2**64 - 1
    study_id = _running(exchange, actors, privacy_budget=top)
    contribute(exchange, actors.hospital, study_id, 1, ROOT, 5, UPDATE)
    exchange.studies.record_round(actors.coordinator, study_id, 1, MODEL, [actors.hospital.address], top)
    contribute(exchange, actors.hospital, study_id, 2, ROOT, 5, UPDATE)
    with expect_revert("StudyRegistryPrivacyBudgetExceeded", studyId=study_id, spent=top, requested=1, budget=top):
        exchange.studies.record_round(actors.coordinator, study_id, 2, MODEL, [actors.hospital.address], 1)
    exchange.studies.record_round(actors.coordinator, study_id, 2, MODEL, [actors.hospital.address], 0)


def _set_rounds_completed(anvil, exchange: Exchange, study_id: int, value: int) -> None:
    """Write ``roundsCompleted`` of ``study_id`` straight into storage (hardhat_setStorageAt).

    Layout (solc): ``_nextId`` is slot 0 and ``_studies`` slot 1, so study ``i`` starts at
    keccak(i . 1); its first word packs researcher (bytes 0-19 from the right), status, purpose,
    kinds, disease (4), rounds (2) and roundsCompleted (2) at bytes 29-30. The test reads the
    value back through the ``study`` view, so a wrong layout fails it.
    """
    base = int.from_bytes(Web3.solidity_keccak(["uint256", "uint256"], [study_id, 1]), "big")
    address = exchange.studies.address
    word = int(rpc(anvil.rpc_url, "eth_getStorageAt", [address, hex(base), "latest"]), 16)
    word = (word & ~(0xFFFF << (29 * 8))) | (value << (29 * 8))
    set_storage_at(anvil.rpc_url, address, base, word.to_bytes(32, "big"))


def test_the_last_of_65535_rounds_leaves_no_round_open(exchange: Exchange, actors: Actors, anvil,
                                                       expect_revert) -> None:
    """roundsCompleted + 1 overflowed at 65535 and reverted with a panic; now no round is open, by name."""
    study_id = _running(exchange, actors, rounds=65535)
    _set_rounds_completed(anvil, exchange, study_id, 65535)
    assert exchange.studies.study(study_id).rounds_completed == 65535
    with expect_revert("StudyRegistryNoOpenRound", studyId=study_id, rounds=65535):
        contribute(exchange, actors.hospital, study_id, 65535, ROOT, 5, UPDATE)
    with expect_revert("StudyRegistryNoOpenRound", studyId=study_id, rounds=65535):
        exchange.studies.record_round(actors.coordinator, study_id, 65535, MODEL, [actors.hospital.address])
    tx = exchange.studies.complete(actors.coordinator, study_id, MODEL, LINEAGE)
    assert tx.event(StudyCompleted).rounds == 65535


@pytest.mark.parametrize("v", [0, 26, 29, 255])
def test_a_signature_that_recovers_no_signer_is_refused_as_invalid(exchange: Exchange, actors: Actors,
                                                                   expect_revert, v: int) -> None:
    """With v not 27 or 28, recovery gives the zero address; that is an invalid signature, not another signer."""
    patient: LocalAccount = actors.patients[0]
    scope = Scope(purpose=Purpose.HMB)
    signed = exchange.consent.sign_grant(patient, scope, Kind.IMAGE, NO_EXPIRY)
    fn = exchange.consent.contract.functions.grantBySig(
        patient.address, scope.as_tuple(), int(Kind.IMAGE), NO_EXPIRY, signed.nonce, signed.deadline, v,
        signed.r, signed.s)
    with expect_revert("ConsentRegistryInvalidSignature", patient=patient.address):
        exchange.chain.transact(actors.stranger, fn)
    good = exchange.consent.contract.functions.grantBySig(
        patient.address, scope.as_tuple(), int(Kind.IMAGE), NO_EXPIRY, signed.nonce, signed.deadline, signed.v,
        signed.r, signed.s)
    exchange.chain.transact(actors.stranger, good)
