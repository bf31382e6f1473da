"""The consortium's roles as the admin sees them: their names, who holds them, which may be combined.

Holders are read from ``ConsortiumRoles``' ``RoleGranted`` / ``RoleRevoked`` events (AccessControl
keeps no list of members) and each is confirmed with ``hasRole`` at the block the events were
read to, so the list is the state of one block; where the two disagree, ``hasRole`` wins and the
disagreement is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from eth_utils.address import to_checksum_address

from contracts.enums import Role
from deploy.errors import AdminRefused
from deploy.settings import check_address

if TYPE_CHECKING:
    from contracts.exchange import Exchange

#: The role names the command line takes (any case), in the order it lists them.
ROLE_NAMES: dict[str, Role] = {
    "admin": Role.CONSORTIUM_ADMIN,
    "hospital": Role.HOSPITAL,
    "researcher": Role.RESEARCHER,
    "coordinator": Role.COORDINATOR,
}
_NAME_OF = {role.value: name for name, role in ROLE_NAMES.items()}

#: The working roles one account may not hold together with each role (separation of duties:
#: the coordinator starts studies and records the rounds hospitals contribute, so it is held
#: alone). ConsortiumRoles refuses such a grant with ConsortiumRolesIncompatibleRoles.
EXCLUDES: dict[Role, tuple[Role, ...]] = {
    Role.COORDINATOR: (Role.HOSPITAL, Role.RESEARCHER),
    Role.HOSPITAL: (Role.COORDINATOR,),
    Role.RESEARCHER: (Role.COORDINATOR,),
}


def parse_role(name: str) -> Role:
    """The role called ``name`` (admin, hospital, researcher, coordinator; any case).

    Raises:
        AdminRefused: no role has that name; the message lists the valid ones.
    """
    role = ROLE_NAMES.get(name.strip().lower())
    if role is None:
        raise AdminRefused(f"unknown role {name!r}; give one of {', '.join(ROLE_NAMES)} (any case)")
    return role


def role_label(role_id: bytes) -> str:
    """The command line's name of the role ``role_id`` ("hospital"), or its hex id if it is none of them."""
    return _NAME_OF.get(role_id, "0x" + role_id.hex())


def parse_address(value: str) -> str:
    """``value`` as a checksummed address.

    Raises:
        AdminRefused: not 0x and 40 hex digits, or mixed-case with a wrong checksum.
    """
    try:
        check_address(value)
    except ValueError as exc:
        raise AdminRefused(f"ADDRESS {exc}; give the account's address as the wallet shows it") from None
    return to_checksum_address(value)


@dataclass(frozen=True)
class Holder:
    """An account holding a role, and the grant that gave it."""

    account: str
    granted_block: int
    granted_by: str
    tx_hash: str


@dataclass(frozen=True)
class RoleHolders:
    """Who holds each role at ``block``: role id -> holders in the order they were granted.

    ``disagreements`` lists, one line each, where the events and ``hasRole`` disagree (a log
    the endpoint did not return); the holders follow ``hasRole``.
    """

    block: int
    holders: dict[bytes, list[Holder]]
    disagreements: list[str]

    def of(self, role: Role) -> list[Holder]:
        """The holders of ``role``."""
        return self.holders.get(role.value, [])


def read_holders(exchange: Exchange) -> RoleHolders:
    """Who holds each role of ``exchange``'s ConsortiumRoles at the latest block.

    Every role ever granted is listed, the four known ones always (possibly empty), any other
    role id an admin granted by hand under its hex id.
    """
    from contracts.events import RoleGranted, RoleRevoked, read_events

    block = exchange.chain.block_number
    start = exchange.deployment.contracts["ConsortiumRoles"].block
    last_grant: dict[tuple[bytes, str], Holder] = {}
    order: dict[tuple[bytes, str], tuple[int, int]] = {}  # where the last grant stands in the chain
    held_by_events: set[tuple[bytes, str]] = set()
    for event in read_events(exchange.chain, [exchange.roles.address], from_block=start, to_block=block):
        if isinstance(event, RoleGranted):
            key = (event.role, event.account)
            last_grant[key] = Holder(event.account, event.block_number, event.sender, event.tx_hash)
            order[key] = (event.block_number, event.log_index)
            held_by_events.add(key)
        elif isinstance(event, RoleRevoked):
            held_by_events.discard((event.role, event.account))
    holders: dict[bytes, list[Holder]] = {role.value: [] for role in ROLE_NAMES.values()}
    disagreements = []
    for (role_id, account), grant in sorted(last_grant.items(), key=lambda kv: order[kv[0]]):
        held = _holds(exchange, role_id, account, block)
        if held != ((role_id, account) in held_by_events):
            events_say = "holds" if not held else "does not hold"
            disagreements.append(f"the events say {account} {events_say} the {role_label(role_id)} role, hasRole at "
                                 f"block {block} says the opposite; listed as hasRole says")
        if held:
            holders.setdefault(role_id, []).append(grant)
    return RoleHolders(block, holders, disagreements)


def _holds(exchange: Exchange, role_id: bytes, account: str, block: int) -> bool:
    if role_id in _NAME_OF:
        return exchange.roles.has(Role(role_id), account, block=block)
    # A role none of the contracts uses, granted by hand: asked of the contract directly.
    return bool(exchange.chain.call(exchange.roles.contract.functions.hasRole(role_id, account), block=block))


def conflicting_roles(exchange: Exchange, role: Role, account: str) -> list[Role]:
    """The roles ``account`` holds that may not be combined with ``role``.

    In the order ConsortiumRoles checks them (:data:`EXCLUDES`); empty when the grant may go ahead.
    """
    return [held for held in EXCLUDES.get(role, ()) if exchange.roles.has(held, account)]
