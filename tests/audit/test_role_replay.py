"""The auditor's role replay answers as ``ConsortiumRoles.hasRole`` did, at every block.

A scripted scenario grants, revokes, renounces, grants a role already held and revokes one not
held (neither emits an event), and hands the admin role over and back; a randomized one plays sequences
drawn by hypothesis. Each block's answers are compared with ``hasRole`` by ``eth_call`` there.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import decode
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import audit
from contracts.exchange import Exchange
from contracts.roles import Role
from deploy.anvil import AnvilNode, advance_time
from tests.audit.conftest import chain_has_role
from tests.conftest import chain_restored


@dataclass(frozen=True)
class Change:
    """``by`` calls ``grantRole`` / ``revokeRole`` / ``renounceRole`` of ``role`` for ``account``
    (names of :func:`cast`; renouncing, ``by`` is the account itself)."""

    action: str  # "grant", "revoke" or "renounce"
    role: Role
    account: str
    by: str = "admin"


@dataclass(frozen=True)
class Handover:
    """The consortium admin ``old`` makes ``new`` admin in its place."""

    old: str
    new: str


SCRIPT: tuple[Change | Handover, ...] = (
    Change("grant", Role.RESEARCHER, "stranger"),
    Change("revoke", Role.HOSPITAL, "hospital2"),
    Change("grant", Role.HOSPITAL, "hospital"),  # already held: no event, nothing changes
    Change("revoke", Role.COORDINATOR, "stranger"),  # not held: no event, nothing changes
    Change("renounce", Role.COORDINATOR, "coordinator", by="coordinator"),
    Change("grant", Role.HOSPITAL, "hospital2"),  # back after a revocation
    Change("grant", Role.COORDINATOR, "patient"),
    Handover("admin", "stranger"),
    Change("revoke", Role.RESEARCHER, "researcher", by="stranger"),  # the new admin at work
    Handover("stranger", "admin"),
)


def cast(actors: Any) -> dict[str, LocalAccount]:
    """The accounts a role scenario names."""
    return {"admin": actors.admin, "hospital": actors.hospital, "hospital2": actors.hospital2,
            "outsider": actors.outsider_hospital, "researcher": actors.researcher,
            "coordinator": actors.coordinator, "stranger": actors.stranger, "patient": actors.patients[0]}


def hand_over(exchange: Exchange, rpc_url: str, old: LocalAccount, new: LocalAccount) -> None:
    """Make ``new`` the consortium admin instead of ``old``, as the deployed ConsortiumRoles allows: with
    AccessControl, ``old`` grants the admin role and renounces it; with AccessControlDefaultAdminRules,
    ``old`` begins the transfer and ``new`` accepts it once the delay has passed (both emit
    RoleGranted / RoleRevoked, which is all the replay reads)."""
    contract = exchange.roles.contract
    functions = {entry.get("name") for entry in contract.abi if entry.get("type") == "function"}
    if "beginDefaultAdminTransfer" in functions:
        exchange.chain.transact(old, contract.functions.beginDefaultAdminTransfer(new.address))
        advance_time(rpc_url, int(contract.functions.defaultAdminDelay().call()) + 1)
        exchange.chain.transact(new, contract.functions.acceptDefaultAdminTransfer())
    else:
        exchange.chain.transact(old, contract.functions.grantRole(Role.CONSORTIUM_ADMIN.value, new.address))
        exchange.chain.transact(old, contract.functions.renounceRole(Role.CONSORTIUM_ADMIN.value, old.address))


def play(steps: tuple[Change | Handover, ...], exchange: Exchange, actors: Any, rpc_url: str) -> None:
    """Send each change from its ``by`` account; hand the admin role over where asked."""
    who = cast(actors)
    functions = {"grant": "grantRole", "revoke": "revokeRole", "renounce": "renounceRole"}
    for step in steps:
        if isinstance(step, Handover):
            hand_over(exchange, rpc_url, who[step.old], who[step.new])
            continue
        call = exchange.roles.contract.functions[functions[step.action]](step.role.value, who[step.account].address)
        if step.action == "grant" and _incompatible(exchange, step.role, who[step.account].address):
            continue  # ConsortiumRoles refuses it (the coordinator role is held alone): nothing to replay
        exchange.chain.transact(who[step.by], call)


def _incompatible(exchange: Exchange, role: Role, account: str) -> bool:
    """Whether granting ``role`` to ``account`` breaks the separation of duties ConsortiumRoles enforces."""
    if role is Role.COORDINATOR:
        return exchange.roles.has(Role.HOSPITAL, account) or exchange.roles.has(Role.RESEARCHER, account)
    return role in (Role.HOSPITAL, Role.RESEARCHER) and exchange.roles.has(Role.COORDINATOR, account)


def compare_roles(reader: audit.ChainReader, history: audit.RoleHistory, roles: str, accounts: Sequence[str],
                  blocks: range) -> int:
    """Assert the replay gives ``hasRole``'s answer for every role and account at every block of ``blocks``;
    return how many (role, account, block) held."""
    pairs = list(itertools.product([r.value for r in Role], accounts))
    wrong, held = [], 0
    for block in blocks:
        for (role, account), chain_says in zip(pairs, chain_has_role(reader.rpc_url, roles, pairs, block),
                                               strict=True):
            held += chain_says
            if history.has_role(role, account, block) != chain_says:
                wrong.append(f"block {block}: {audit.role_name(role)} of {account}: chain {chain_says}")
    assert not wrong, f"{len(wrong)} answers differ, e.g.\n" + "\n".join(wrong[:10])
    return held


@pytest.fixture(scope="module")
def scripted(module_exchange: Exchange, actors: Any, anvil: AnvilNode, reader: audit.ChainReader,
             deployment: audit.Deployment, artifacts: dict[str, audit.Artifact]) -> audit.RoleHistory:
    play(SCRIPT, module_exchange, actors, anvil.rpc_url)
    return audit.read_role_history(reader, deployment, artifacts)


def test_replay_holds_roles_as_the_chain_did_at_every_block(scripted: audit.RoleHistory, reader: audit.ChainReader,
                                                            deployment: audit.Deployment, actors: Any) -> None:
    registry = deployment.contract("ConsortiumRoles")
    accounts = [a.address for a in cast(actors).values()]
    held = compare_roles(reader, scripted, registry.address, accounts, range(registry.block, scripted.to_block + 1))
    assert held > 0


def test_replay_lists_each_account_s_roles_and_each_role_s_members(scripted: audit.RoleHistory,
                                                                   actors: Any) -> None:
    """At the end of the script: who holds what, through both views."""
    who = {name: account.address for name, account in cast(actors).items()}
    last = scripted.to_block
    assert scripted.members(Role.HOSPITAL.value, last) == {who["hospital"], who["hospital2"], who["outsider"]}
    assert scripted.members(Role.RESEARCHER.value, last) == {who["stranger"]}
    assert scripted.members(Role.COORDINATOR.value, last) == {who["patient"]}
    assert scripted.members(Role.CONSORTIUM_ADMIN.value, last) == {who["admin"]}
    assert scripted.roles_of(who["stranger"], last) == {Role.RESEARCHER.value}
    assert scripted.roles_of(who["coordinator"], last) == frozenset()
    assert scripted.accounts == set(who.values())


def test_the_auditor_s_role_ids_are_the_contract_s(reader: audit.ChainReader, deployment: audit.Deployment) -> None:
    """Each role constant of ConsortiumRoles, read by eth_call, is the one the auditor names."""
    registry = deployment.contract("ConsortiumRoles")
    for name, role in audit.ROLES.items():
        answer = reader.call(registry.address, keccak(text=f"{name}()")[:4], reader.block_number)
        assert decode(["bytes32"], answer)[0] == role, name


# ---------------------------------------------------------------- randomized scenarios

_MEMBERS = ["hospital", "researcher", "stranger", "patient"]
_changes = st.lists(
    st.builds(Change, action=st.sampled_from(["grant", "revoke"]),
              role=st.sampled_from([Role.HOSPITAL, Role.RESEARCHER, Role.COORDINATOR]),
              account=st.sampled_from(_MEMBERS))
    | st.sampled_from(_MEMBERS).flatmap(lambda member: st.builds(
        Change, action=st.just("renounce"), role=st.sampled_from([Role.HOSPITAL, Role.RESEARCHER]),
        account=st.just(member), by=st.just(member))),
    min_size=1,
    max_size=10,
).map(tuple)


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_changes)
def test_replay_of_random_role_changes_holds_roles_as_the_chain_did(exchange: Exchange, actors: Any,
                                                                    anvil: AnvilNode, reader: audit.ChainReader,
                                                                    manifest: Path,
                                                                    changes: tuple[Change, ...]) -> None:
    with chain_restored(anvil):
        start = exchange.chain.block_number
        play(changes, exchange, actors, anvil.rpc_url)
        deployment = audit.read_manifest(manifest)
        history = audit.read_role_history(reader, deployment, audit.read_artifacts())
        accounts = [cast(actors)[m].address for m in _MEMBERS]
        held = compare_roles(reader, history, deployment.contract("ConsortiumRoles").address, accounts,
                             range(start, history.to_block + 1))
    assert held > 0  # the hospital and the researcher hold their roles from the deployment on
