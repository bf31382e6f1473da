"""Shared plumbing of the typed contract clients."""

from __future__ import annotations

from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3.contract import Contract
from web3.types import BlockIdentifier

from contracts.chain import Chain, TxResult

BlockId = BlockIdentifier


class ContractClient:
    """A typed client of one deployed contract.

    Parameters:
        chain: the connection to use.
        address: where the contract is deployed.
    """

    artifact: ClassVar[str]

    def __init__(self, chain: Chain, address: str) -> None:
        self.chain = chain
        self.contract: Contract = chain.contract(self.artifact, address)

    @property
    def address(self) -> str:
        """The contract's checksummed address."""
        return str(self.contract.address)

    def _call(self, fn: str, *args: Any, block: BlockId = "latest") -> Any:
        return self.chain.call(self.contract.functions[fn](*args), block=block)

    def _send(self, account: LocalAccount, fn: str, *args: Any) -> TxResult:
        return self.chain.transact(account, self.contract.functions[fn](*args))
