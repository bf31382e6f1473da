"""Replay ``ConsortiumRoles``' ``RoleGranted`` / ``RoleRevoked`` events: who held which role at any block.

OpenZeppelin's AccessControl emits ``RoleGranted`` only when an account gains a role and
``RoleRevoked`` only when it loses one (revoked or renounced); AccessControlDefaultAdminRules
moves the admin role with the same two events. So membership after block B is the last of
those events up to B, and a grant of a role already held (or a revocation of one not held)
cannot have come from such a contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from audit.artifacts import Artifact, artifact_named
from audit.errors import ReplayError
from audit.events import Event, read_events
from audit.manifest import Deployment
from audit.rpc import ChainReader
from audit.timeline import Timeline

#: The events of ConsortiumRoles that change a membership.
EVENTS = ("RoleGranted", "RoleRevoked")
DEFAULT_ADMIN_ROLE = bytes(32)
#: The consortium's roles by name (``Roles.sol``; the admin is AccessControl's DEFAULT_ADMIN_ROLE).
ROLES = {
    "DEFAULT_ADMIN_ROLE": DEFAULT_ADMIN_ROLE,
    "HOSPITAL_ROLE": keccak(text="HOSPITAL_ROLE"),
    "RESEARCHER_ROLE": keccak(text="RESEARCHER_ROLE"),
    "COORDINATOR_ROLE": keccak(text="COORDINATOR_ROLE"),
}


def role_name(role: bytes) -> str:
    """Return the name of a role id, or its hex for a role the consortium does not define."""
    return next((name for name, value in ROLES.items() if value == role), "0x" + role.hex())


class RoleHistory:
    """Every account's roles at every block, replayed from the role registry's events.

    Parameters:
        events: the ``RoleGranted`` and ``RoleRevoked`` events, in chain order.
        to_block: the last block the events were read up to; later blocks cannot be answered.

    Raises:
        ReplayError: a grant of a role already held, a revocation of one not held, events out
            of chain order or after ``to_block``.
    """

    def __init__(self, events: Iterable[Event], *, to_block: int) -> None:
        self.to_block = to_block
        self._members: dict[tuple[bytes, str], Timeline[bool]] = {}
        for event in events:
            if event.name not in EVENTS:
                raise ReplayError(f"{event.name} in block {event.block} is not a role event {EVENTS}")
            if event.block > to_block:
                raise ReplayError(f"{event.name} in block {event.block}, after block {to_block} the history ends at")
            key = (bytes(event.args["role"]), to_checksum_address(event.args["account"]))
            timeline = self._members.setdefault(key, Timeline())
            granted = event.name == "RoleGranted"
            if bool(timeline.last) == granted:
                raise ReplayError(f"{event.name} of {role_name(key[0])} for {key[1]} in block {event.block} "
                                  f"({event.tx_hash}): it {'already held' if granted else 'did not hold'} that role")
            timeline.set(event.block, granted)

    @property
    def accounts(self) -> frozenset[str]:
        """Every account that ever held a role (checksummed)."""
        return frozenset(account for _, account in self._members)

    def has_role(self, role: bytes, account: str, block: int) -> bool:
        """Return whether ``account`` held ``role`` in the state after ``block``, as ``hasRole`` then answered.

        Raises:
            ReplayError: ``block`` is after the last block the history was read up to.
        """
        if block > self.to_block:
            raise ReplayError(f"the role history was read up to block {self.to_block}; it cannot answer for "
                              f"block {block} (read it again)")
        timeline = self._members.get((bytes(role), to_checksum_address(account)))
        return bool(timeline and timeline.at(block))

    def roles_of(self, account: str, block: int) -> frozenset[bytes]:
        """Return the roles ``account`` held in the state after ``block``."""
        checksummed = to_checksum_address(account)
        return frozenset(role for role, who in self._members if who == checksummed
                         and self.has_role(role, who, block))

    def members(self, role: bytes, block: int) -> frozenset[str]:
        """Return the accounts that held ``role`` in the state after ``block``."""
        return frozenset(who for r, who in self._members if r == role and self.has_role(r, who, block))


def read_role_history(reader: ChainReader, deployment: Deployment, artifacts: Mapping[str, Artifact],
                      *, to_block: int | None = None) -> RoleHistory:
    """Read ConsortiumRoles' role events from its deployment block and replay them.

    Parameters:
        to_block: the last block read (default: the latest).

    Raises:
        ReplayError, ArtifactError, ManifestError, RpcError: as :class:`RoleHistory`,
            :func:`audit.events.read_events` and :meth:`Deployment.contract`.
    """
    registry = deployment.contract("ConsortiumRoles")
    last = reader.block_number if to_block is None else to_block
    events = read_events(reader, artifact_named(artifacts, "ConsortiumRoles"), registry.address, EVENTS,
                         registry.block, last)
    return RoleHistory(events, to_block=last)
