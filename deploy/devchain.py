"""Development-chain calls that both local chains answer: Anvil and Hardhat's network.

Tests move a local chain's clock, mine empty blocks, snapshot and restore it, and write its
state directly. These methods are not part of the Ethereum JSON-RPC standard: a production
endpoint (geth, Besu) refuses them. Both chains the project starts answer the ``evm_*``
methods, and Anvil answers every ``hardhat_*`` method used here under that name too (as an alias
of its own ``anvil_*`` method), so one set of helpers serves both (:mod:`deploy.anvil`,
:mod:`deploy.hardhat`).

For these calls the two differ in one place: the clock after ``evm_revert``. Anvil puts its
clock back to where it stood at the snapshot, so the next block follows the restored latest
one. Hardhat's network (2.29.1, npm ``@nomicfoundation/edr`` 0.12.0-next.23) instead moves its
clock *forward* by as long as the snapshot was held (three snapshots held 2 s each: the next
block 6 s ahead of the wall clock, 12 s after the restored latest block), so in a session of
tests that each undo their changes the gap grows with the session, and a test that grants a
consent expiring a minute after the latest block sees it expire before its own transaction is
mined. :func:`revert_to` therefore pins Hardhat's next block right after the restored latest
one (``evm_setNextBlockTimestamp``), as Anvil mines it; a pinned next block ignores
``evm_increaseTime``, so on Hardhat :func:`advance_time` pins the block it mines too.
"""

from __future__ import annotations

from typing import Any

import requests

__all__ = ["advance_time", "mine", "revert_to", "rpc", "set_balance", "set_code", "set_storage_at", "snapshot"]


def rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 10.0) -> Any:
    """Send one JSON-RPC request and return its result (raises RuntimeError on an RPC error)."""
    reply = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=timeout
    ).json()
    if "error" in reply:
        raise RuntimeError(f"{method} failed: {reply['error']}")
    return reply["result"]


def snapshot(url: str) -> str:
    """Snapshot the chain state (``evm_snapshot``); returns an id for :func:`revert_to`."""
    return str(rpc(url, "evm_snapshot"))


def revert_to(url: str, snapshot_id: str) -> None:
    """Return the chain, clock included, to ``snapshot_id`` (``evm_revert``); that snapshot and later ones are used up.

    Raises:
        RuntimeError: the chain refused (an unknown or already used snapshot id).
    """
    if not rpc(url, "evm_revert", [snapshot_id]):
        raise RuntimeError(f"evm_revert to {snapshot_id} refused")
    if _is_hardhat(url):  # its clock ran ahead instead of back (module docstring)
        rpc(url, "evm_setNextBlockTimestamp", [_latest_timestamp(url) + 1])


def advance_time(url: str, seconds: int) -> None:
    """Move the chain clock forward by ``seconds`` and mine a block.

    On Hardhat's network the block is mined ``seconds`` after the latest one (at least 1: it mines
    no two blocks in the same second).
    """
    if _is_hardhat(url):  # a block pinned by revert_to would ignore evm_increaseTime
        rpc(url, "evm_setNextBlockTimestamp", [_latest_timestamp(url) + max(seconds, 1)])
    else:
        rpc(url, "evm_increaseTime", [seconds])
    rpc(url, "evm_mine")


def mine(url: str, blocks: int = 1) -> None:
    """Mine ``blocks`` empty blocks (``hardhat_mine``; Anvil's ``anvil_mine`` under its other name)."""
    rpc(url, "hardhat_mine", [hex(blocks)])


def set_balance(url: str, address: str, wei: int) -> None:
    """Set the balance of ``address`` to ``wei`` (``hardhat_setBalance``)."""
    rpc(url, "hardhat_setBalance", [address, hex(wei)])


def set_code(url: str, address: str, code: str) -> None:
    """Replace the runtime code at ``address`` with ``code`` (0x-hex; ``hardhat_setCode``)."""
    rpc(url, "hardhat_setCode", [address, code])


def set_storage_at(url: str, address: str, slot: int, word: bytes) -> None:
    """Write the 32-byte ``word`` into storage ``slot`` of ``address`` (``hardhat_setStorageAt``).

    Raises:
        ValueError: ``word`` is not 32 bytes.
    """
    if len(word) != 32:
        raise ValueError(f"a storage word is 32 bytes, got {len(word)}; pad it with int.to_bytes(32, 'big')")
    rpc(url, "hardhat_setStorageAt", [address, hex(slot), "0x" + word.hex()])


def _is_hardhat(url: str) -> bool:
    return str(rpc(url, "web3_clientVersion")).startswith("HardhatNetwork/")


def _latest_timestamp(url: str) -> int:
    return int(rpc(url, "eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
