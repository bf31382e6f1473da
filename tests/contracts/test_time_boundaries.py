"""Deadlines and expiries at their exact second, in an empty block mined at that second.

A mined transaction's block time cannot be pinned before its gas is estimated, so these
calls run as ``eth_call`` against an empty block mined at the second under test
(``evm_setNextBlockTimestamp``), which is undone right after (``evm_snapshot`` /
``evm_revert``): the contract sees exactly that second, the shared world is left as it was,
and a refusal decodes to its custom error. (Not ``eth_call``'s block-override argument, a geth
extension Anvil has and Hardhat's network does not: this way both chains run these tests.)
The documented rules: a signature is valid up to and including its deadline; a consent is in
force strictly before its expiry, which must lie after the grant.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from eth_abi.abi import decode

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.reverts import decode_revert
from deploy.devchain import revert_to, rpc, snapshot
from tests.contracts.conftest import EXPIRING_SCOPE, WORLD_SCOPE, World
from tests.contracts.test_role_refusals import consent_id

DEADLINE = 2_000_000_000  # a fixed second in 2033, well after the chain's clock


def call_at(world: World, caller: str, function: Any, time: int) -> bytes:
    """Run ``function`` from ``caller`` in a block mined at ``time``, then undo that block; raise its revert."""
    url = world.chain.rpc_url
    mark = snapshot(url)
    try:
        rpc(url, "evm_setNextBlockTimestamp", [time])
        rpc(url, "evm_mine")
        block = world.chain.block_number
        body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [
            {"from": world.accounts[caller].address, "to": function.address,
             "data": function._encode_transaction_data()}, hex(block)]}
        answer = requests.post(url, json=body, timeout=10).json()
    finally:
        revert_to(url, mark)
    if "error" in answer:
        data = answer["error"].get("data")
        if isinstance(data, dict):  # Hardhat's network nests the revert data beside its own message
            data = data.get("data")
        assert isinstance(data, str), f"no revert data in {answer['error']}"
        raise decode_revert(bytes.fromhex(data[2:]))
    return bytes.fromhex(answer["result"][2:])


def relayed(world: World, kind: str) -> Any:
    """A grant (by the stranger) or revocation (by patient 0) signed with deadline DEADLINE."""
    consent = world.exchange.consent
    if kind == "grant":
        s = consent.sign_grant(world.accounts["stranger"], Scope(purpose=Purpose.HMB), Kind.IMAGE, NO_EXPIRY,
                               deadline=DEADLINE)
        return world.function("ConsentRegistry", "grantBySig", s.patient, s.scope.as_tuple(), int(Kind.IMAGE),
                              NO_EXPIRY, s.nonce, s.deadline, s.v, s.r, s.s)
    s = consent.sign_revoke(world.accounts["patient"], WORLD_SCOPE, deadline=DEADLINE)
    return world.function("ConsentRegistry", "revokeBySig", s.patient, s.scope.as_tuple(), s.nonce, s.deadline,
                          s.v, s.r, s.s)


@pytest.mark.parametrize("kind", ["grant", "revoke"])
def test_signature_is_valid_in_its_deadline_second(world: World, kind: str) -> None:
    """At the deadline itself the relayed call goes through."""
    assert call_at(world, "coordinator", relayed(world, kind), DEADLINE) == b""


@pytest.mark.parametrize("kind", ["grant", "revoke"])
def test_signature_is_refused_one_second_after_its_deadline(world: World, expect_revert, kind: str) -> None:
    """One second later it has expired."""
    with expect_revert("ConsentRegistryExpiredSignature", deadline=DEADLINE, nowTimestamp=DEADLINE + 1):
        call_at(world, "coordinator", relayed(world, kind), DEADLINE + 1)


def test_grant_expiring_in_its_own_second_is_refused(world: World, expect_revert) -> None:
    """A consent that would lapse the moment it is granted is refused; one second more is accepted."""
    grant = world.function("ConsentRegistry", "grant", Scope(purpose=Purpose.HMB).as_tuple(), int(Kind.IMAGE),
                           DEADLINE)
    with expect_revert("ConsentRegistryExpiryInPast", expiresAt=DEADLINE, nowTimestamp=DEADLINE):
        call_at(world, "stranger", grant, DEADLINE)
    assert call_at(world, "stranger", grant, DEADLINE - 1) == b""


def use_tuple() -> tuple[str, int, int, int, int]:
    """A use patient 1's consent covers: a named hospital, CT sinograms, general research."""
    return ("0x" + "22" * 20, int(Kind.CT_SINOGRAM), int(Purpose.GRU), 0, 0)


@pytest.mark.parametrize(("offset", "expected"), [(-1, True), (0, False), (1, False)])
def test_consent_is_in_force_strictly_before_its_expiry(world: World, offset: int, expected: bool) -> None:
    """permits and permitsBatch answer yes one second before expiry and no from the expiry on."""
    patient = world.accounts["patient1"].address
    one = call_at(world, "stranger", world.function("ConsentRegistry", "permits", patient, use_tuple()),
                  world.expiry + offset)
    batch = call_at(world, "stranger", world.function("ConsentRegistry", "permitsBatch",
                                                      [patient, patient], use_tuple()), world.expiry + offset)
    assert decode(["bool"], one) == (expected,)
    assert decode(["bool[]"], batch) == ((expected, expected),)


def test_explain_names_the_expiry_from_its_second_on(world: World, expect_revert) -> None:
    """At the expiry second the reason is ConsentExpired with the consent's id and expiry."""
    patient = world.accounts["patient1"].address
    explain = world.function("ConsentRegistry", "explain", patient, use_tuple())
    assert call_at(world, "stranger", explain, world.expiry - 1) == b""
    with expect_revert("ConsentRegistryConsentExpired", patient=patient,
                       consentId=consent_id(patient, EXPIRING_SCOPE), expiresAt=world.expiry):
        call_at(world, "stranger", explain, world.expiry)
