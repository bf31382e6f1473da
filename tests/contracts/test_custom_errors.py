"""Each custom error raised for its real condition, with its exact arguments.

The calls are sent as a client would send them, bypassing the Python clients' own checks
(which refuse most bad values before they reach the chain), so that the contract's checks are
the ones tested. Every call here reverts, so the module shares one deployment (``world``);
next to each refusal, the nearest valid value is accepted, so that an off-by-one in a
comparison fails a test too.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_utils.crypto import keccak

from contracts.artifacts import load_artifact
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from tests.contracts.conftest import LINEAGE, MODEL, ROOT, TASK, UPDATE, WORLD_SCOPE, World, undone
from tests.contracts.test_role_refusals import consent_id

# Solidity enum StudyRegistry.Status, in declaration order.
REQUESTED, RUNNING, COMPLETED = 1, 3, 4
ZERO = bytes(32)
ZERO_ADDRESS = "0x" + "00" * 20
CT = b"CT".ljust(16, b"\0")


def send(world: World, caller: str, contract: str, function: str, *args: Any) -> Any:
    """Send ``contract.function(*args)`` from ``caller`` (raises the decoded revert)."""
    return world.chain.transact(world.accounts[caller], world.function(contract, function, *args))


def accepted(world: World, caller: str, contract: str, function: str, *args: Any) -> bool:
    """Whether the call would succeed (simulated: the shared world stays as it is)."""
    return world.function(contract, function, *args).estimate_gas({"from": world.accounts[caller].address}) > 0


def contribution(world: World, study_id: int, round_: int = 1, root: bytes = ROOT, count: int = 9,
                 update: bytes = UPDATE, *, block: int | None = None, datasets: list[int] | None = None,
                 hospital: str = "hospital") -> tuple[Any, ...]:
    """contribute arguments: by default a cohort read at the latest block, from ``hospital``'s dataset."""
    at = world.chain.block_number if block is None else block
    return (study_id, round_, root, count, at, [world.datasets[hospital]] if datasets is None else datasets, update)


def study_request(world: World, **change: Any) -> tuple[Any, ...]:
    """A valid StudyRequest tuple with ``change`` applied."""
    fields = {"purpose": int(Purpose.GRU), "disease": 0, "kinds": int(Kind.IMAGE),
              "hospitals": [world.accounts["hospital"].address], "task": TASK, "rounds": 1, "budget": 0}
    fields.update(change)
    return tuple(fields.values())


# ---------------------------------------------------------------- StudyRegistry.request


@pytest.mark.parametrize(("purpose", "disease"), [(0, 0), (4, 0), (3, 0), (1, 5), (2, 9), (255, 1)])
def test_request_with_an_undefined_purpose_is_refused(world: World, expect_revert, purpose: int,
                                                      disease: int) -> None:
    """DUO codes: 1 GRU and 2 HMB without a disease, 3 DS with one; nothing else."""
    with expect_revert("StudyRegistryInvalidPurpose", purpose=purpose, disease=disease):
        send(world, "researcher", "StudyRegistry", "request", study_request(world, purpose=purpose, disease=disease))


@pytest.mark.parametrize(("purpose", "disease"), [(1, 0), (2, 0), (3, 1), (3, 2**32 - 1)])
def test_request_with_a_defined_purpose_is_accepted(world: World, purpose: int, disease: int) -> None:
    """The valid neighbours of the refused purpose codes."""
    assert accepted(world, "researcher", "StudyRegistry", "request",
                    study_request(world, purpose=purpose, disease=disease))


@pytest.mark.parametrize("kinds", [0, 16, 31, 128, 255])
def test_request_with_undefined_kinds_is_refused(world: World, expect_revert, kinds: int) -> None:
    """Kinds are a non-empty subset of the four defined bits (15)."""
    with expect_revert("StudyRegistryInvalidKinds", kinds=kinds):
        send(world, "researcher", "StudyRegistry", "request", study_request(world, kinds=kinds))


@pytest.mark.parametrize("kinds", [1, 8, 15])
def test_request_with_defined_kinds_is_accepted(world: World, kinds: int) -> None:
    """The smallest, largest single and full set of defined kinds."""
    assert accepted(world, "researcher", "StudyRegistry", "request", study_request(world, kinds=kinds))


def test_request_without_hospitals_is_refused(world: World, expect_revert) -> None:
    """A study nobody can approve could never start."""
    with expect_revert("StudyRegistryNoHospitals"):
        send(world, "researcher", "StudyRegistry", "request", study_request(world, hospitals=[]))


def test_request_without_task_code_hash_is_refused(world: World, expect_revert) -> None:
    """Hospitals approve a named task; a zero hash names none."""
    with expect_revert("StudyRegistryZeroTaskCodeHash"):
        send(world, "researcher", "StudyRegistry", "request", study_request(world, task=ZERO))


def test_request_for_zero_rounds_is_refused(world: World, expect_revert) -> None:
    """A study of no rounds could never be completed (completion needs one round)."""
    with expect_revert("StudyRegistryInvalidRounds", rounds=0):
        send(world, "researcher", "StudyRegistry", "request", study_request(world, rounds=0))


# ---------------------------------------------------------------- decisions and start


@pytest.mark.parametrize("function", ["approve", "decline", "start"])
def test_unknown_study_is_refused(world: World, expect_revert, function: str) -> None:
    """Study ids start at 1; 0 and ids past the last are unknown."""
    caller = "coordinator" if function == "start" else "hospital"
    for study_id in (0, world.studies["recorded"] + 1):
        with expect_revert("StudyRegistryUnknownStudy", studyId=study_id):
            send(world, caller, "StudyRegistry", function, study_id)


@pytest.mark.parametrize("function", ["approve", "decline"])
def test_deciding_on_a_running_study_is_refused(world: World, expect_revert, function: str) -> None:
    """Decisions are taken before the start."""
    study_id = world.studies["running"]
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=RUNNING, expected=REQUESTED):
        send(world, "hospital", "StudyRegistry", function, study_id)


def test_starting_a_running_study_again_is_refused(world: World, expect_revert) -> None:
    """A study starts once."""
    study_id = world.studies["running"]
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=RUNNING, expected=REQUESTED):
        send(world, "coordinator", "StudyRegistry", "start", study_id)


def test_starting_without_any_approval_is_refused(world: World, expect_revert) -> None:
    """Every named hospital must approve: none of two has."""
    study_id = world.studies["requested"]
    with expect_revert("StudyRegistryNotApproved", studyId=study_id, approvals=0, required=2):
        send(world, "coordinator", "StudyRegistry", "start", study_id)


# ---------------------------------------------------------------- contribute


def test_contribution_with_a_zero_update_hash_is_refused(world: World, expect_revert) -> None:
    """The update hash is what the coordinator matches the update against."""
    with expect_revert("StudyRegistryZeroHash"):
        send(world, "hospital", "StudyRegistry", "contribute",
             *contribution(world, world.studies["running"], 1, ROOT, 9, ZERO))


def test_contribution_with_a_zero_cohort_root_is_refused(world: World, expect_revert) -> None:
    """A cohort nobody can prove membership of is no commitment."""
    with expect_revert("StudyRegistryInvalidCohort", cohortRoot=ZERO, cohortCount=9):
        send(world, "hospital", "StudyRegistry", "contribute",
             *contribution(world, world.studies["running"], 1, ZERO, 9, UPDATE))


def test_contribution_of_one_record_is_accepted(world: World) -> None:
    """The smallest cohort is one record."""
    assert accepted(world, "hospital", "StudyRegistry", "contribute",
                    *contribution(world, world.studies["running"], 1, ROOT, 1, UPDATE))


@pytest.mark.parametrize("round_", [0, 2])
def test_contribution_to_a_round_that_is_not_open_is_refused(world: World, expect_revert, round_: int) -> None:
    """Only round 1 is open before any round is recorded."""
    study_id = world.studies["running"]
    with expect_revert("StudyRegistryWrongRound", studyId=study_id, round=round_, expected=1):
        send(world, "hospital", "StudyRegistry", "contribute", *contribution(world, study_id, round_, ROOT, 9, UPDATE))


@pytest.mark.parametrize("round_", [1, 2])
def test_contribution_after_the_last_round_is_refused(world: World, expect_revert, round_: int) -> None:
    """A one-round study whose round is recorded has no open round; the error names none that does not exist."""
    study_id = world.studies["recorded"]
    with expect_revert("StudyRegistryNoOpenRound", studyId=study_id, rounds=1):
        send(world, "hospital", "StudyRegistry", "contribute", *contribution(world, study_id, round_, ROOT, 9, UPDATE))


def test_contribution_to_an_unknown_study_is_refused(world: World, expect_revert) -> None:
    """No study 0."""
    with expect_revert("StudyRegistryUnknownStudy", studyId=0):
        send(world, "hospital", "StudyRegistry", "contribute", *contribution(world, 0, 1, ROOT, 9, UPDATE))


def test_contribution_by_a_named_hospital_that_has_not_decided_is_refused(world: World, expect_revert) -> None:
    """Named is not enough: the study must have been started, which needs approval."""
    study_id = world.studies["requested"]
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=REQUESTED, expected=RUNNING):
        send(world, "hospital", "StudyRegistry", "contribute", *contribution(world, study_id, 1, ROOT, 9, UPDATE))


# ---------------------------------------------------------------- recordRound and complete


def record(world: World, state: str, round_: int = 1, model: bytes = MODEL, contributors: list[str] | None = None,
           spent: int = 0) -> tuple[Any, ...]:
    """recordRound arguments for the study in ``state`` (default contributor: hospital 1)."""
    who = [world.accounts["hospital"].address] if contributors is None else contributors
    return (world.studies[state], round_, model, who, spent)


def test_round_with_a_zero_model_hash_is_refused(world: World, expect_revert) -> None:
    """The round's model must be named."""
    with expect_revert("StudyRegistryZeroHash"):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "contributed", model=ZERO))


def test_round_without_contributors_is_refused(world: World, expect_revert) -> None:
    """An aggregate of nothing."""
    with expect_revert("StudyRegistryNoContributors"):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "contributed", contributors=[]))


def test_round_with_contributors_out_of_order_is_refused(world: World, expect_revert) -> None:
    """Contributors come in strictly increasing address order (so none is counted twice)."""
    low, high = sorted((world.accounts["hospital"].address, world.accounts["hospital2"].address),
                       key=lambda a: int(a, 16))
    with expect_revert("StudyRegistryUnsortedContributors", hospital=low):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "both", contributors=[high, low]))
    assert accepted(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "both",
                                                                                  contributors=[low, high]))


def test_round_naming_a_contributor_twice_is_refused(world: World, expect_revert) -> None:
    """Equal neighbours are not strictly increasing."""
    h = world.accounts["hospital"].address
    with expect_revert("StudyRegistryUnsortedContributors", hospital=h):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "both", contributors=[h, h]))


def test_round_naming_the_zero_address_is_refused(world: World, expect_revert) -> None:
    """The zero address is below every real address, so it is never "increasing" from the start."""
    with expect_revert("StudyRegistryUnsortedContributors", hospital=ZERO_ADDRESS):
        send(world, "coordinator", "StudyRegistry", "recordRound",
             *record(world, "both", contributors=[ZERO_ADDRESS]))


def test_round_of_a_study_not_running_is_refused(world: World, expect_revert) -> None:
    """An approved study that was not started has no rounds."""
    study_id = world.studies["approved"]
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=REQUESTED, expected=RUNNING):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "approved"))


@pytest.mark.parametrize(("state", "round_", "open_"), [("contributed", 2, 1), ("contributed", 0, 1)])
def test_round_that_is_not_open_is_refused(world: World, expect_revert, state: str, round_: int,
                                           open_: int) -> None:
    """Rounds are recorded in order, once each."""
    with expect_revert("StudyRegistryWrongRound", studyId=world.studies[state], round=round_, expected=open_):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, state, round_=round_))


@pytest.mark.parametrize("round_", [1, 2])
def test_round_past_the_last_is_refused_naming_no_round(world: World, expect_revert, round_: int) -> None:
    """Every round of the one-round study is recorded: no round is open, and none is named as expected."""
    with expect_revert("StudyRegistryNoOpenRound", studyId=world.studies["recorded"], rounds=1):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "recorded", round_=round_))


def test_round_spending_more_than_the_budget_is_refused(world: World, expect_revert) -> None:
    """Budget 1000 milli-epsilon: 1001 is over it, exactly 1000 is within it."""
    study_id = world.studies["contributed"]
    with expect_revert("StudyRegistryPrivacyBudgetExceeded", studyId=study_id, spent=0, requested=1001, budget=1000):
        send(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "contributed", spent=1001))
    assert accepted(world, "coordinator", "StudyRegistry", "recordRound", *record(world, "contributed", spent=1000))


def test_completion_with_a_zero_model_hash_is_refused(world: World, expect_revert) -> None:
    """The final model must be named."""
    with expect_revert("StudyRegistryZeroHash"):
        send(world, "coordinator", "StudyRegistry", "complete", world.studies["recorded"], ZERO, LINEAGE)
    with expect_revert("StudyRegistryZeroHash"):
        send(world, "coordinator", "StudyRegistry", "complete", world.studies["recorded"], MODEL, ZERO)
    assert accepted(world, "coordinator", "StudyRegistry", "complete", world.studies["recorded"], MODEL, LINEAGE)


def test_completion_of_a_study_not_running_is_refused(world: World, expect_revert) -> None:
    """Only a running study completes."""
    study_id = world.studies["requested"]
    with expect_revert("StudyRegistryUnexpectedStatus", studyId=study_id, status=REQUESTED, expected=RUNNING):
        send(world, "coordinator", "StudyRegistry", "complete", study_id, MODEL, LINEAGE)


# ---------------------------------------------------------------- DatasetRegistry


def dataset(world: World, **change: Any) -> tuple[Any, ...]:
    """Valid register() arguments with ``change`` applied."""
    fields = {"root": keccak(text="fresh root"), "count": 1, "kinds": int(Kind.IMAGE), "modality": CT,
              "synthetic": False, "parents": [], "transform": ZERO}
    fields.update(change)
    return tuple(fields.values())


def test_dataset_without_modality_is_refused(world: World, expect_revert) -> None:
    """A dataset must say what it holds."""
    with expect_revert("DatasetRegistryNoModality"):
        send(world, "hospital", "DatasetRegistry", "register", *dataset(world, modality=bytes(16)))


@pytest.mark.parametrize("kinds", [0, 16, 255])
def test_dataset_with_undefined_kinds_is_refused(world: World, expect_revert, kinds: int) -> None:
    """The same kinds vocabulary as consent."""
    with expect_revert("DatasetRegistryInvalidKinds", kinds=kinds):
        send(world, "hospital", "DatasetRegistry", "register", *dataset(world, kinds=kinds))


def test_dataset_of_one_record_and_all_kinds_is_accepted(world: World) -> None:
    """The valid neighbours: one record, kinds 15."""
    assert accepted(world, "hospital", "DatasetRegistry", "register", *dataset(world, count=1, kinds=15))


@pytest.mark.parametrize("offset", [0, 1])
def test_dataset_derived_from_a_dataset_not_yet_registered_is_refused(world: World, expect_revert,
                                                                      offset: int) -> None:
    """Parents are registered datasets: ids 1 to the count; the next id and beyond are not."""
    count = world.exchange.datasets.count()
    parent = count + 1 + offset
    with expect_revert("DatasetRegistryUnknownParent", parentId=parent):
        send(world, "hospital", "DatasetRegistry", "register",
             *dataset(world, parents=[world.dataset, parent], transform=keccak(text="fbp")))
    assert accepted(world, "hospital", "DatasetRegistry", "register",
                    *dataset(world, parents=[count], transform=keccak(text="fbp")))


def test_dataset_derived_from_dataset_zero_is_refused(world: World, expect_revert) -> None:
    """Id 0 is never a dataset."""
    with expect_revert("DatasetRegistryUnknownParent", parentId=0):
        send(world, "hospital", "DatasetRegistry", "register", *dataset(world, parents=[0], transform=keccak(b"t")))


@pytest.mark.parametrize("caller", ["hospital", "hospital2"])
def test_a_root_is_registered_once_in_the_whole_consortium(world: World, expect_revert, caller: str) -> None:
    """Neither the holder nor another hospital registers a root again; the error names the holder."""
    root = world.exchange.datasets.dataset(world.dataset).merkle_root
    with expect_revert("DatasetRegistryDuplicateRoot", hospital=world.accounts["hospital"].address,
                       merkleRoot=root, datasetId=world.dataset):
        send(world, caller, "DatasetRegistry", "register", *dataset(world, root=root))
    assert accepted(world, caller, "DatasetRegistry", "register", *dataset(world, root=keccak(root)))


@pytest.mark.parametrize("function", ["dataset", "containsRecord"])
def test_views_of_an_unknown_dataset_are_refused(world: World, expect_revert, function: str) -> None:
    """Ids 0 and past the count are unknown; the last id is known."""
    count = world.exchange.datasets.count()
    extra: tuple[Any, ...] = () if function == "dataset" else (ROOT, [])
    for dataset_id in (0, count + 1):
        with expect_revert("DatasetRegistryUnknownDataset", datasetId=dataset_id):
            world.chain.call(world.function("DatasetRegistry", function, dataset_id, *extra))
    assert world.chain.call(world.function("DatasetRegistry", function, count, *extra)) is not None


# ---------------------------------------------------------------- ConsentRegistry


def use(world: World, **change: Any) -> tuple[Any, ...]:
    """A valid Use tuple (the world patient's own scope) with ``change`` applied."""
    fields = {"hospital": WORLD_SCOPE.hospital, "kinds": int(Kind.CT_SINOGRAM), "purpose": int(WORLD_SCOPE.purpose),
              "disease": WORLD_SCOPE.disease, "study": WORLD_SCOPE.study_id}
    fields.update(change)
    return tuple(fields.values())


def test_grant_with_an_undefined_purpose_is_refused(world: World, expect_revert) -> None:
    """DS needs a disease code; the Python Scope would refuse it before the chain does."""
    with expect_revert("ConsentRegistryInvalidPurpose", purpose=3, disease=0):
        send(world, "patient", "ConsentRegistry", "grant", (ZERO_ADDRESS, 3, 0, 0), int(Kind.IMAGE), NO_EXPIRY)


@pytest.mark.parametrize("function", ["permits", "permitsBatch", "explain"])
@pytest.mark.parametrize(("change", "error", "values"), [
    ({"kinds": 0}, "ConsentRegistryInvalidKinds", {"kinds": 0}),
    ({"kinds": 16}, "ConsentRegistryInvalidKinds", {"kinds": 16}),
    ({"purpose": 1, "disease": 7}, "ConsentRegistryInvalidPurpose", {"purpose": 1, "disease": 7}),
    ({"purpose": 0, "disease": 0}, "ConsentRegistryInvalidPurpose", {"purpose": 0, "disease": 0}),
])
def test_views_refuse_an_undefined_use(world: World, expect_revert, function: str, change: dict[str, int],
                                       error: str, values: dict[str, int]) -> None:
    """A use nobody could have consented to is an error, not a silent "no"."""
    patient = world.accounts["patient"].address
    who: Any = [patient] if function == "permitsBatch" else patient
    with expect_revert(error, **values):
        world.chain.call(world.function("ConsentRegistry", function, who, use(world, **change)))


def test_explain_without_any_consent_names_the_patient(world: World, expect_revert) -> None:
    """A stranger never granted anything."""
    stranger = world.accounts["stranger"].address
    with expect_revert("ConsentRegistryNoMatchingConsent", patient=stranger):
        world.chain.call(world.function("ConsentRegistry", "explain", stranger, use(world)))


def test_explain_for_another_hospital_finds_no_matching_consent(world: World, expect_revert) -> None:
    """The patient consented for one hospital; a use by another matches nothing."""
    patient = world.accounts["patient"].address
    other = world.accounts["hospital2"].address
    with expect_revert("ConsentRegistryNoMatchingConsent", patient=patient):
        world.chain.call(world.function("ConsentRegistry", "explain", patient, use(world, hospital=other)))
    assert world.chain.call(world.function("ConsentRegistry", "explain", patient, use(world))) == []



# ---------------------------------------------------------------- constructors


def test_roles_registry_without_an_admin_is_refused(world: World, expect_revert) -> None:
    """A registry nobody administers could never grant a role."""
    with expect_revert("AccessControlInvalidDefaultAdmin", defaultAdmin=ZERO_ADDRESS):
        world.chain.deploy(world.accounts["admin"], load_artifact("ConsortiumRoles"), 3600, ZERO_ADDRESS)


def test_dataset_registry_without_a_role_registry_is_refused(world: World, expect_revert) -> None:
    """Every role check would call the zero address."""
    with expect_revert("RoleGatedZeroRegistry"):
        world.chain.deploy(world.accounts["admin"], load_artifact("DatasetRegistry"), ZERO_ADDRESS)


def test_study_registry_without_either_registry_is_refused(world: World, expect_revert) -> None:
    """Without the role registry every role check, without the dataset registry every contribution, would call
    the zero address."""
    roles, datasets = world.exchange.roles.address, world.exchange.datasets.address
    for args in ((ZERO_ADDRESS, datasets), (roles, ZERO_ADDRESS)):
        with expect_revert("RoleGatedZeroRegistry"):
            world.chain.deploy(world.accounts["admin"], load_artifact("StudyRegistry"), *args)


# ---------------------------------------------------------------- explain: the most specific reason


@pytest.mark.parametrize("broader", ["any hospital", "any study"])
def test_explain_gives_the_reason_of_the_most_specific_consent(world: World, anvil, actors, expect_revert,
                                                               broader: str) -> None:
    """ConsentRegistry.explain NatSpec: when several matching consents fail, the most specific one's
    reason is given. A revoked consent for this hospital and study outranks a broader one that is in
    force but does not cover the kinds asked for."""
    patient = actors.patients[2]
    hospital, study = world.accounts["hospital"].address, 5
    specific = Scope(hospital=hospital, purpose=Purpose.HMB, study_id=study)
    wider = Scope(hospital=ZERO_ADDRESS if broader == "any hospital" else hospital, purpose=Purpose.HMB,
                  study_id=study if broader == "any hospital" else 0)
    consent = world.exchange.consent
    asked = (hospital, int(Kind.CT_SINOGRAM), int(Purpose.HMB), 0, study)
    with undone(anvil):
        consent.grant(patient, specific, Kind.CT_SINOGRAM, NO_EXPIRY)
        revoked_in = consent.revoke(patient, specific).block_number
        consent.grant(patient, wider, Kind.IMAGE, NO_EXPIRY)  # in force, but not for sinograms
        with expect_revert("ConsentRegistryConsentRevoked", patient=patient.address,
                           consentId=consent_id(patient.address, specific), revokedAtBlock=revoked_in):
            world.chain.call(world.function("ConsentRegistry", "explain", patient.address, asked))
