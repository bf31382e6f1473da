"""Who may call each state-changing function, checked for every actor against the ABI.

The table below is written from the contracts' documented intent (DESIGN, "On-chain model";
the NatSpec of each function), not from the code: the consortium admin alone grants and
revokes roles; hospitals register datasets, decide on the studies that name them and
contribute to the ones they approved; the researcher requests studies; the coordinator
starts, records and completes them; a patient grants and revokes their own consent and cancels
their own signatures, and anyone may relay a patient's signature, alone or in a batch. Each
call is made with arguments that are valid apart from the caller (the allowed caller's call
succeeds with the very same arguments), so a refusal is the caller check and nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from contracts.artifacts import CONTRACT_NAMES, load_artifact
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.reverts import known_errors
from contracts.roles import Role
from contracts.studies import Decision
from tests.chain_steps import contribute
from tests.contracts.conftest import LINEAGE, MODEL, ROOT, TASK, UPDATE, WORLD_SCOPE, World, undone

ADMIN_ROLE = bytes(32)
HOSPITAL_ROLE = keccak(text="HOSPITAL_ROLE")
RESEARCHER_ROLE = keccak(text="RESEARCHER_ROLE")
COORDINATOR_ROLE = keccak(text="COORDINATOR_ROLE")

#: The roles each actor of the world holds (tests/contracts/conftest.py grants them).
HELD: dict[str, set[bytes]] = {
    "admin": {ADMIN_ROLE},
    "hospital": {HOSPITAL_ROLE},
    "hospital2": {HOSPITAL_ROLE},
    "outsider_hospital": {HOSPITAL_ROLE},  # a hospital the world's studies do not name
    "researcher": {RESEARCHER_ROLE},
    "coordinator": {COORDINATOR_ROLE},
    "patient": set(),  # holds consent WORLD_SCOPE
    "stranger": set(),
}
ACTORS = tuple(HELD)
EVERYONE = frozenset(ACTORS)


@dataclass(frozen=True)
class Rule:
    """Who may call a function, and how everyone else is refused.

    Callers without ``role`` (if any) get ``AccessControlUnauthorizedAccount(caller, role)``;
    callers that hold it but are still not allowed get ``other`` with ``other_values``
    (where the values name the caller, ``"$caller"`` stands for its address).
    """

    allowed: frozenset[str]
    role: bytes | None = None
    other: str | None = None
    other_values: tuple[tuple[str, Any], ...] = ()


TABLE: dict[tuple[str, str], Rule] = {
    ("ConsortiumRoles", "grantRole"): Rule(frozenset({"admin"}), ADMIN_ROLE),
    ("ConsortiumRoles", "revokeRole"): Rule(frozenset({"admin"}), ADMIN_ROLE),
    # Only the holder renounces its own role; the confirmation argument must be the caller.
    ("ConsortiumRoles", "renounceRole"): Rule(frozenset({"hospital"}), None, "AccessControlBadConfirmation"),
    # The admin seat moves in two steps (AccessControlDefaultAdminRules): the admin begins or cancels
    # a transfer and changes or rolls back the delay; only the pending new admin accepts, and the
    # world has none, so everyone is refused as not the pending admin.
    ("ConsortiumRoles", "beginDefaultAdminTransfer"): Rule(frozenset({"admin"}), ADMIN_ROLE),
    ("ConsortiumRoles", "cancelDefaultAdminTransfer"): Rule(frozenset({"admin"}), ADMIN_ROLE),
    ("ConsortiumRoles", "changeDefaultAdminDelay"): Rule(frozenset({"admin"}), ADMIN_ROLE),
    ("ConsortiumRoles", "rollbackDefaultAdminDelay"): Rule(frozenset({"admin"}), ADMIN_ROLE),
    ("ConsortiumRoles", "acceptDefaultAdminTransfer"): Rule(frozenset(), None, "AccessControlInvalidDefaultAdmin",
                                                            (("defaultAdmin", "$caller"),)),
    ("DatasetRegistry", "register"): Rule(frozenset({"hospital", "hospital2", "outsider_hospital"}), HOSPITAL_ROLE),
    ("StudyRegistry", "request"): Rule(frozenset({"researcher"}), RESEARCHER_ROLE),
    ("StudyRegistry", "withdraw"): Rule(frozenset({"researcher"}), RESEARCHER_ROLE),
    ("StudyRegistry", "approve"): Rule(frozenset({"hospital", "hospital2"}), HOSPITAL_ROLE,
                                       "StudyRegistryNotInvited", (("hospital", "$caller"),)),
    ("StudyRegistry", "decline"): Rule(frozenset({"hospital", "hospital2"}), HOSPITAL_ROLE,
                                       "StudyRegistryNotInvited", (("hospital", "$caller"),)),
    # DESIGN: "the chain enforces roles at the moment of every action" -- a contribution too.
    ("StudyRegistry", "contribute"): Rule(frozenset({"hospital", "hospital2"}), HOSPITAL_ROLE,
                                          "StudyRegistryNotParticipant",
                                          (("hospital", "$caller"), ("decision", Decision.NONE))),
    ("StudyRegistry", "start"): Rule(frozenset({"coordinator"}), COORDINATOR_ROLE),
    ("StudyRegistry", "recordRound"): Rule(frozenset({"coordinator"}), COORDINATOR_ROLE),
    ("StudyRegistry", "complete"): Rule(frozenset({"coordinator"}), COORDINATOR_ROLE),
    ("ConsentRegistry", "grant"): Rule(EVERYONE),  # each caller grants its own consent
    # A consent is the caller's own: anyone else revoking "it" has none under that scope.
    ("ConsentRegistry", "revoke"): Rule(frozenset({"patient"}), None, "ConsentRegistryNotGranted",
                                        (("patient", "$caller"), ("consentId", "$consent"))),
    ("ConsentRegistry", "grantBySig"): Rule(EVERYONE),  # anyone may relay a patient's signature
    ("ConsentRegistry", "revokeBySig"): Rule(EVERYONE),
    ("ConsentRegistry", "grantBySigBatch"): Rule(EVERYONE),
    ("ConsentRegistry", "revokeBySigBatch"): Rule(EVERYONE),
    ("ConsentRegistry", "cancelSignatures"): Rule(EVERYONE),  # each caller cancels its own signatures
}

#: Errors in the ABI that no call can raise, with the reason (checked by the meta-test).
UNREACHABLE = {
    "InvalidShortString": "OpenZeppelin ShortStrings.byteLength, raised only for a malformed ShortString; "
                          "EIP712 builds its name and version ShortStrings itself from constants",
    "StringTooLong": "OpenZeppelin ShortStrings.toShortString; EIP712 calls it only through "
                     "toShortStringWithFallback, which stores strings over 31 bytes instead of reverting",
    "SafeCastOverflowedUintDowncast": "AccessControlDefaultAdminRules casts block.timestamp to uint48, which "
                                      "overflows only after the year 8,000,000",
}


def consent_id(patient: str, scope: Scope) -> bytes:
    """The consent id as the contract documents it: keccak256(abi.encode(patient, scope...))."""
    return keccak(encode(["address", "address", "uint8", "uint32", "uint256"],
                         [patient, scope.hospital, int(scope.purpose), scope.disease, scope.study_id]))


def arguments(world: World, contract: str, function: str, caller: str = "hospital") -> tuple[Any, ...]:
    """Arguments valid for the function's allowed callers in ``world`` (a contribution names ``caller``'s
    dataset when it has one)."""
    acc, st = world.accounts, world.studies
    ex = world.exchange
    if contract == "ConsortiumRoles":
        if function == "beginDefaultAdminTransfer":
            return (acc["stranger"].address,)
        if function == "changeDefaultAdminDelay":
            return (3600,)
        if function in ("cancelDefaultAdminTransfer", "rollbackDefaultAdminDelay", "acceptDefaultAdminTransfer"):
            return ()
        if function == "renounceRole":
            return (HOSPITAL_ROLE, acc["hospital"].address)
        if function == "grantRole":
            return (RESEARCHER_ROLE, acc["stranger"].address)
        return (HOSPITAL_ROLE, acc["hospital2"].address)
    if contract == "DatasetRegistry":
        return (keccak(text="another dataset"), 3, int(Kind.MR_KSPACE), b"MR".ljust(16, b"\0"), True, [], bytes(32))
    if contract == "StudyRegistry":
        # hospital and hospital2 registered their datasets while the world was built: nothing is sent here.
        dataset = world.datasets[caller if caller in world.datasets else "hospital"]
        return {
            "request": ((int(Purpose.GRU), 0, int(Kind.IMAGE), [acc["hospital"].address], TASK, 1, 0),),
            "withdraw": (st["requested"],),
            "approve": (st["requested"],),
            "decline": (st["requested"],),
            "start": (st["approved"],),
            "contribute": (st["running"], 1, ROOT, 9, world.chain.block_number, [dataset], UPDATE),
            "recordRound": (st["contributed"], 1, MODEL, [acc["hospital"].address], 500),
            "complete": (st["recorded"], MODEL, LINEAGE),
        }[function]
    scope = Scope(purpose=Purpose.HMB).as_tuple()
    if function == "grant":
        return (scope, int(Kind.IMAGE), NO_EXPIRY)
    if function == "revoke":
        return (WORLD_SCOPE.as_tuple(),)
    if function == "cancelSignatures":
        return (1,)  # no actor of the world has used a nonce: 0 is everyone's current one
    if function.startswith("grantBySig"):
        s = ex.consent.sign_grant(acc["stranger"], Scope(purpose=Purpose.HMB), Kind.IMAGE, NO_EXPIRY)
        grant = (s.patient, scope, int(Kind.IMAGE), NO_EXPIRY, s.nonce, s.deadline, s.v, s.r, s.s)
        return ([grant],) if function.endswith("Batch") else grant
    s = ex.consent.sign_revoke(acc["patient"], WORLD_SCOPE)
    revoke = (s.patient, WORLD_SCOPE.as_tuple(), s.nonce, s.deadline, s.v, s.r, s.s)
    return ([revoke],) if function.endswith("Batch") else revoke


def expected_refusal(world: World, rule: Rule, contract: str, function: str, caller: str) -> tuple[str, dict[str, Any]]:
    """The error and arguments the table says ``caller`` gets."""
    address = world.accounts[caller].address
    if rule.role is not None and rule.role not in HELD[caller]:
        return "AccessControlUnauthorizedAccount", {"account": address, "neededRole": rule.role}
    assert rule.other is not None, f"{contract}.{function}: the table names no refusal for {caller}"
    values: dict[str, Any] = {}
    for key, value in rule.other_values:
        if value == "$caller":
            value = address
        elif value == "$consent":
            value = consent_id(address, WORLD_SCOPE)
        values[key] = value
    if contract == "StudyRegistry":
        args = arguments(world, contract, function)
        values["studyId"] = args[0]
    return rule.other, values


CASES = [(c, f, who) for (c, f) in TABLE for who in ACTORS]


@pytest.mark.parametrize(("contract", "function", "caller"), CASES, ids=[f"{c}.{f}-{w}" for c, f, w in CASES])
def test_caller_is_allowed_or_refused_with_its_exact_error(world: World, expect_revert, contract: str,
                                                           function: str, caller: str) -> None:
    """The allowed callers' call would succeed; every other caller gets the table's error."""
    rule = TABLE[(contract, function)]
    account = world.accounts[caller]
    call = world.function(contract, function, *arguments(world, contract, function, caller))
    if caller in rule.allowed:
        # Simulated only (eth_estimateGas): the shared world must stay as it is.
        assert call.estimate_gas({"from": account.address}) > 21_000
        return
    error, values = expected_refusal(world, rule, contract, function, caller)
    with expect_revert(error, **values):
        world.chain.transact(account, call)


def test_table_lists_every_state_changing_function_of_the_abi() -> None:
    """A function added to a contract without a row in the table fails here."""
    in_abi = {
        (name, item["name"])
        for name in CONTRACT_NAMES
        for item in load_artifact(name).abi
        if item["type"] == "function" and item["stateMutability"] not in ("view", "pure")
    }
    assert in_abi == set(TABLE)


_EXPECTED = re.compile(r"expect_revert\(\s*\"(\w+)\"")


def test_every_custom_error_is_expected_by_some_test() -> None:
    """Each error in the ABI is passed to expect_revert in some tests/contracts file (or is unreachable)."""
    sources = Path(__file__).parent.glob("*.py")
    expected = {name for path in sources for name in _EXPECTED.findall(path.read_text(encoding="utf-8"))}
    expected |= {"AccessControlUnauthorizedAccount"} | {r.other for r in TABLE.values() if r.other}
    in_abi = set(known_errors())
    assert set(UNREACHABLE) <= in_abi, "UNREACHABLE names an error no longer in the ABI"
    assert in_abi - expected - set(UNREACHABLE) == set()
    assert not expected & set(UNREACHABLE), "an error listed as unreachable is expected by a test"


def test_hospital_removed_after_approving_cannot_contribute(world: World, anvil, expect_revert) -> None:
    """A role revoked mid-study takes effect at once (DESIGN: roles are enforced at every action)."""
    hospital2 = world.accounts["hospital2"]
    study_id = world.studies["running"]  # hospital2 approved it before it started
    assert world.exchange.studies.decision_of(study_id, hospital2.address) == Decision.APPROVED
    with undone(anvil):
        world.exchange.roles.revoke(world.accounts["admin"], Role.HOSPITAL, hospital2.address)
        with expect_revert("AccessControlUnauthorizedAccount", account=hospital2.address, neededRole=HOSPITAL_ROLE):
            contribute(world.exchange, hospital2, study_id, 1, ROOT, 4, UPDATE)
        assert world.exchange.studies.contribution_of(study_id, 1, hospital2.address) is None
