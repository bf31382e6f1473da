"""ConsortiumRoles: the admin grants and revokes roles; nobody else can."""

from __future__ import annotations

from contracts.events import RoleGranted, RoleRevoked
from contracts.exchange import Exchange
from contracts.roles import Role


def test_admin_grants_role_with_event(exchange: Exchange, actors) -> None:
    tx = exchange.roles.grant(actors.admin, Role.RESEARCHER, actors.stranger.address)
    event = tx.event(RoleGranted)
    assert (event.role, event.account, event.sender) == (
        Role.RESEARCHER.value, actors.stranger.address, actors.admin.address)
    assert exchange.roles.has(Role.RESEARCHER, actors.stranger.address)


def test_admin_revokes_role_with_event(exchange: Exchange, actors) -> None:
    tx = exchange.roles.revoke(actors.admin, Role.HOSPITAL, actors.hospital2.address)
    assert tx.event(RoleRevoked).account == actors.hospital2.address
    assert not exchange.roles.has(Role.HOSPITAL, actors.hospital2.address)


def test_non_admin_cannot_grant(exchange: Exchange, actors, expect_revert) -> None:
    with expect_revert("AccessControlUnauthorizedAccount", account=actors.hospital.address,
                 neededRole=Role.CONSORTIUM_ADMIN.value):
        exchange.roles.grant(actors.hospital, Role.HOSPITAL, actors.stranger.address)
