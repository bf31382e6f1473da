"""Typed client of ``ConsortiumRoles``: who is a hospital, a researcher, the coordinator."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount

from contracts.base import BlockId, ContractClient
from contracts.chain import TxResult
from contracts.enums import Role

__all__ = ["Role", "RolesClient"]


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
