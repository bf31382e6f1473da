"""Typed client of ``ConsortiumRoles``: who is a hospital, a researcher, the coordinator."""

from __future__ import annotations

from enum import Enum

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from contracts.base import BlockId, ContractClient
from contracts.chain import TxResult


class Role(Enum):
    """Consortium roles and their on-chain identifiers."""

    CONSORTIUM_ADMIN = bytes(32)
    HOSPITAL = keccak(text="HOSPITAL_ROLE")
    RESEARCHER = keccak(text="RESEARCHER_ROLE")
    COORDINATOR = keccak(text="COORDINATOR_ROLE")


class RolesClient(ContractClient):
    """The consortium's role registry."""

    artifact = "ConsortiumRoles"

    def grant(self, admin: LocalAccount, role: Role, account: str) -> TxResult:
        """Give ``role`` to ``account``; ``admin`` must administer the role."""
        return self._send(admin, "grantRole", role.value, account)

    def revoke(self, admin: LocalAccount, role: Role, account: str) -> TxResult:
        """Take ``role`` from ``account``."""
        return self._send(admin, "revokeRole", role.value, account)

    def has(self, role: Role, account: str, *, block: BlockId = "latest") -> bool:
        """Whether ``account`` holds ``role``."""
        return bool(self._call("hasRole", role.value, account, block=block))
