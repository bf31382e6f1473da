"""A small JSON-RPC reader on web3: logs in block chunks, block timestamps, ``eth_call`` at a block.

It only reads; it holds no keys and sends no transactions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests
from eth_typing import HexStr
from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from audit.errors import CallReverted, ManifestError, RpcError
from audit.manifest import Deployment

#: A topic filter position: one topic, any of several, or None for any.
TopicFilter = bytes | Sequence[bytes] | None


@dataclass(frozen=True)
class Log:
    """One event log as the node returned it (topics and data still ABI-encoded)."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes
    block: int
    log_index: int
    tx_hash: str


@dataclass(frozen=True)
class Instant:
    """A block and its timestamp (unix seconds): the moment a question is asked about."""

    block: int
    timestamp: int


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _topic_filter(topics: Sequence[TopicFilter]) -> list[str | list[str] | None]:
    out: list[str | list[str] | None] = []
    for position in topics:
        if position is None or isinstance(position, bytes):
            out.append(None if position is None else _hex(position))
        else:
            out.append([_hex(t) for t in position])
    return out


class ChainReader:
    """Read-only access to one JSON-RPC endpoint.

    Parameters:
        rpc_url: the endpoint, e.g. ``http://127.0.0.1:8545``.
        chunk: the most blocks one ``eth_getLogs`` request covers (nodes cap a query's range or size).
        timeout: seconds to wait for each answer.
    """

    def __init__(self, rpc_url: str, *, chunk: int = 2_000, timeout: float = 30.0) -> None:
        if chunk < 1:
            raise ValueError(f"chunk of {chunk} blocks per log query; expected at least 1")
        self.rpc_url = rpc_url
        self.chunk = chunk
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))

    @contextmanager
    def _asking(self, what: str) -> Iterator[None]:
        try:
            yield
        except ContractLogicError:
            raise  # a revert is an answer, handled by the caller
        except (requests.RequestException, Web3Exception, ValueError) as exc:
            raise RpcError(f"{self.rpc_url}: {what} failed ({type(exc).__name__}: {exc})") from exc

    @property
    def chain_id(self) -> int:
        """The chain id the endpoint serves."""
        with self._asking("eth_chainId"):
            return int(self.w3.eth.chain_id)

    @property
    def block_number(self) -> int:
        """The number of the latest block."""
        with self._asking("eth_blockNumber"):
            return int(self.w3.eth.block_number)

    def logs(self, address: str, topics: Sequence[TopicFilter], from_block: int, to_block: int) -> list[Log]:
        """Return the logs of ``address`` matching ``topics`` in blocks ``from_block``..``to_block`` (inclusive).

        Asked in ranges of :attr:`chunk` blocks; returned in chain order (block, then log index).

        Parameters:
            address: the emitting contract.
            topics: a filter per topic position: one topic, a sequence of alternatives, or None.
            from_block: the first block searched.
            to_block: the last block searched.

        Raises:
            RpcError: the endpoint failed or refused a query (try a smaller ``chunk``).
        """
        where = {"address": to_checksum_address(address), "topics": _topic_filter(topics)}
        found: list[Log] = []
        for start in range(from_block, to_block + 1, self.chunk):
            end = min(start + self.chunk - 1, to_block)
            with self._asking(f"eth_getLogs over blocks {start}..{end}"):
                raw = self.w3.eth.get_logs({**where, "fromBlock": start, "toBlock": end})  # type: ignore[typeddict-item]
            found.extend(
                Log(address=to_checksum_address(r["address"]), topics=tuple(bytes(t) for t in r["topics"]),
                    data=bytes(r["data"]), block=int(r["blockNumber"]), log_index=int(r["logIndex"]),
                    tx_hash=_hex(bytes(r["transactionHash"])))
                for r in raw
            )
        return sorted(found, key=lambda log: (log.block, log.log_index))

    def instant(self, block: int) -> Instant:
        """Return block ``block`` with its timestamp.

        Raises:
            RpcError: the endpoint failed or has no such block.
        """
        with self._asking(f"eth_getBlockByNumber({block})"):
            header: Any = self.w3.eth.get_block(block)
        return Instant(block=block, timestamp=int(header["timestamp"]))

    def sender(self, tx_hash: str) -> str:
        """The checksummed address that sent transaction ``tx_hash``.

        Raises:
            RpcError: the endpoint failed or does not know the transaction.
        """
        with self._asking(f"transaction {tx_hash}"):
            return to_checksum_address(self.w3.eth.get_transaction(HexStr(tx_hash))["from"])

    def call(self, to: str, data: bytes, block: int) -> bytes:
        """Run a read-only call of ``to`` with calldata ``data`` in the state after block ``block``.

        Raises:
            CallReverted: the call reverted (its revert data attached).
            RpcError: the endpoint failed, e.g. it no longer keeps that block's state.
        """
        try:
            with self._asking(f"eth_call at block {block}"):
                return bytes(self.w3.eth.call({"to": to_checksum_address(to), "data": data}, block))
        except ContractLogicError as exc:
            raw: object = exc.data
            if isinstance(raw, dict):  # Hardhat's network nests the revert data beside its own message
                raw = raw.get("data")
            raw = raw if isinstance(raw, str) else ""
            data_out = bytes.fromhex(raw.removeprefix("0x")) if raw.startswith("0x") else b""
            raise CallReverted(f"eth_call to {to} at block {block} reverted: {exc}", data_out) from exc


def connect(rpc_url: str, deployment: Deployment, **options: Any) -> ChainReader:
    """Open a :class:`ChainReader` on ``rpc_url`` and check it serves the manifest's chain.

    Parameters:
        options: passed to :class:`ChainReader` (``chunk``, ``timeout``).

    Raises:
        ManifestError: the endpoint serves another chain id than the manifest's.
        RpcError: the endpoint cannot be reached.
    """
    reader = ChainReader(rpc_url, **options)
    if reader.chain_id != deployment.chain_id:
        raise ManifestError(f"{rpc_url} serves chain {reader.chain_id}, the manifest is for chain "
                            f"{deployment.chain_id}; pass the manifest of this chain or another endpoint")
    return reader
