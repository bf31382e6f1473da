"""A connection to an EVM JSON-RPC endpoint, with signed transactions and decoded reverts.

Works against any endpoint (Anvil, Besu, geth): transactions are signed locally by the
sender's key and sent raw, so the node needs no unlocked accounts.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import requests
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, TransactionNotFound, Web3RPCError
from web3.types import BlockIdentifier, RPCEndpoint, RPCResponse

from contracts.artifacts import Artifact, load_artifact
from contracts.endpoint import check_rpc_url
from contracts.errors import ChainError, ChainUnavailable, ConnectionFailed, StateUnavailable, TransactionFailed
from contracts.events import ChainEvent, decode_logs
from contracts.reverts import decode_revert

E = TypeVar("E", bound="ChainEvent")


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction and the events it emitted."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: list[ChainEvent] = field(default_factory=list)
    contract_address: str | None = None

    def event(self, kind: type[E]) -> E:
        """Return the single event of type ``kind`` (raises LookupError if not exactly one)."""
        found = [e for e in self.events if isinstance(e, kind)]
        if len(found) != 1:
            raise LookupError(f"expected one {kind.name} event in {self.tx_hash}, found {len(found)}")
        return found[0]


@dataclass(frozen=True)
class SignedTx:
    """A transaction signed but not yet sent: keep ``raw`` to send it again after a crash."""

    tx_hash: str
    raw: bytes
    sender: str
    nonce: int


@dataclass(frozen=True)
class FeePerGas:
    """The price of a unit of gas, in wei, for a transaction sent now (:meth:`Chain.fee_per_gas`).

    A transaction pays ``per_gas`` for each unit of gas it uses (on an EIP-1559 chain the base fee
    of its block plus the tip; the latest block's base fee is the estimate). The node admits it only
    if the sender's balance covers its gas limit at ``max_per_gas`` (the fee cap), even though only
    the gas used is paid.
    """

    per_gas: int
    max_per_gas: int
    #: EIP-1559's parts of ``per_gas``: the latest block's base fee and the tip; None on a chain without base fees.
    base_fee: int | None = None
    tip: int | None = None


_GAS_MARGIN = 10_000
_PRUNED_MARKERS = ("BlockOutOfRange", "missing trie node", "historical state", "header not found")


def gas_limit_for(estimate: int) -> int:
    """The gas limit to send with a transaction whose gas was estimated at ``estimate``.

    The estimate runs on the current block; the transaction runs in the next one, and a storage
    write's cost can differ between them (e.g. a slot's original value). A margin keeps such a
    transaction from running out of gas; only gas used is paid.
    """
    return estimate + estimate // 5 + _GAS_MARGIN


def _is_pruned(exc: Exception) -> bool:
    return any(marker in str(exc) for marker in _PRUNED_MARKERS)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything it wraps: causes, contexts, arguments, urllib3's ``reason``."""
    seen: list[BaseException] = []
    pending: list[object] = [exc]
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or any(item is s for s in seen):
            continue
        seen.append(item)
        pending += [item.__cause__, item.__context__, getattr(item, "reason", None), *item.args]
    return seen


def _unreachable_reason(exc: BaseException, timeout: float) -> str:
    """Why a request to the endpoint failed, in a few words (urllib3's text is for developers)."""
    causes = _causes(exc)
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "unknown host"
    if any(isinstance(c, (requests.Timeout, TimeoutError, socket.timeout)) for c in causes):
        return f"no answer within {timeout:g} s"
    if any(isinstance(c, ssl.SSLError) for c in causes):
        return "TLS handshake failed"
    if any(isinstance(c, ConnectionResetError) for c in causes):
        return "connection reset"
    if any(isinstance(c, OSError) and c.strerror for c in causes):
        return next(str(c.strerror).lower() for c in causes if isinstance(c, OSError) and c.strerror)
    return type(exc).__name__


def _log_of(raw: dict[str, Any]) -> dict[str, Any]:
    """A log as JSON-RPC gives it (hex strings) in the shape :func:`decode_logs` reads (bytes, ints)."""
    return {"address": raw["address"], "topics": [bytes.fromhex(t[2:]) for t in raw["topics"]],
            "data": bytes.fromhex(raw["data"][2:]), "blockNumber": int(raw["blockNumber"], 16),
            "transactionHash": raw["transactionHash"], "logIndex": int(raw["logIndex"], 16)}


class _Provider(HTTPProvider):
    """web3's HTTP provider, raising :class:`ChainUnavailable` instead of requests' exceptions.

    Every RPC goes through here, so a chain that goes away in the middle of a command gives
    the same one clear error as one that was never there.
    """

    def __init__(self, url: str, timeout: float) -> None:
        super().__init__(url, request_kwargs={"timeout": timeout})
        self._timeout = timeout

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        try:
            return super().make_request(method, params)
        except requests.RequestException as exc:
            raise self._unavailable(exc) from exc

    def make_batch_request(self, batch_requests: list[tuple[RPCEndpoint, Any]]) -> Any:
        try:
            return super().make_batch_request(batch_requests)
        except requests.RequestException as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: requests.RequestException) -> ConnectionFailed:
        url = str(self.endpoint_uri)
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            # Something answers there, but not a chain (a web server, a proxy's error page).
            return ConnectionFailed(f"{url} answers HTTP {exc.response.status_code}, not as an EVM JSON-RPC "
                                    "endpoint; check the URL")
        return ChainUnavailable(url, _unreachable_reason(exc, self._timeout))


def _rpc_message(exc: Exception) -> str:
    """The node's own words for a refused call ("Insufficient funds for gas * price + value")."""
    detail: Any = exc.args[0] if exc.args else None
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        code = f" (JSON-RPC error {detail['code']})" if "code" in detail else ""
        return f"{detail['message']}{code}"
    return str(exc)


def _revert_data(exc: Exception) -> bytes | None:
    data: Any = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    return None


class Chain:
    """One JSON-RPC endpoint and the MeTAI contracts known on it.

    Parameters:
        rpc_url: HTTP JSON-RPC URL, e.g. ``http://127.0.0.1:8545``.
        timeout: seconds to wait for each RPC answer and for each receipt.

    Raises:
        InvalidRpcUrl: ``rpc_url`` is not an http(s) URL with a host.
        ChainUnavailable: nothing answers there (here and on any later call).
        ConnectionFailed: something answers, but not as a JSON-RPC endpoint.
    """

    def __init__(self, rpc_url: str, *, timeout: float = 30.0) -> None:
        self.rpc_url = check_rpc_url(rpc_url)
        self.timeout = timeout
        self._provider = _Provider(self.rpc_url, timeout)
        self.w3 = Web3(self._provider)
        # web3's validation middleware asks the node for its chain id on every call and transaction
        # (an extra round trip each: a quarter of the coordinator's time when relaying consents);
        # every transaction here carries the chain id read once below, and the node refuses one for
        # another chain anyway. Addresses are never ENS names, so that lookup goes too.
        self.w3.middleware_onion.remove("validation")
        self.w3.middleware_onion.remove("ens_name_to_address")
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except ChainUnavailable:
            raise
        except (Web3RPCError, ValueError, TypeError) as exc:
            raise ConnectionFailed(
                f"{self.rpc_url} answers, but not as an EVM JSON-RPC endpoint ({type(exc).__name__}: {exc}); "
                "check the URL"
            ) from exc
        self._names: dict[str, str] = {}  # checksum address -> contract name

    # ------------------------------------------------------------------ contracts

    def contract(self, name: str, address: str) -> Contract:
        """Bind the artifact ``name`` at ``address`` and remember it for event decoding."""
        checksum = Web3.to_checksum_address(address)
        self._names[checksum] = name
        return self.w3.eth.contract(address=checksum, abi=load_artifact(name).abi)

    def contract_name(self, address: str) -> str | None:
        """The name of the known contract at ``address``, if any."""
        return self._names.get(Web3.to_checksum_address(address))

    def deploy(self, account: LocalAccount, artifact: Artifact, *args: Any) -> TxResult:
        """Deploy ``artifact`` with constructor ``args`` from ``account``."""
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        result = self._send(account, factory.constructor(*args), artifact.name)
        if result.contract_address is None:
            raise TransactionFailed(f"deploying {artifact.name} created no contract ({result.tx_hash})")
        self._names[result.contract_address] = artifact.name
        return result

    # ------------------------------------------------------------------ calls

    def call(self, fn: ContractFunction, *, block: BlockIdentifier = "latest") -> Any:
        """Run a view function at ``block``; a revert raises its decoded error."""
        try:
            return fn.call(block_identifier=block)
        except (ContractLogicError, Web3RPCError) as exc:
            if block != "latest" and _is_pruned(exc):
                raise StateUnavailable(
                    f"{self.rpc_url} no longer keeps the state of block {block!r} ({exc}); "
                    "query a newer block or use an archive node"
                ) from exc
            raise self._decoded(exc, fn.address) from exc

    def call_raw_many(self, to: str, calls: Sequence[bytes], *, block: BlockIdentifier = "latest") -> list[bytes]:
        """Run many pre-encoded view calls against ``to`` at ``block`` in one JSON-RPC batch.

        One round trip instead of one per call (the relay asks for the nonces of a batch's patients).
        With ``latest`` each call reads the newest block as the node answers it, so calls of one
        batch may see different blocks if one is mined meanwhile; pass a number to pin them.

        Raises:
            TransactionFailed: a call failed (a view that reverts is not expected here).
        """
        if not calls:
            return []
        provider = self._provider
        # Plain JSON-RPC through the provider (its errors mapped as for every call), without web3's
        # per-call request and result formatters: for a hundred calls they cost more than the calls.
        at = block if isinstance(block, str) else hex(int(block))
        target = Web3.to_checksum_address(to)
        answers = provider.make_batch_request(
            [(RPCEndpoint("eth_call"), [{"to": target, "data": "0x" + data.hex()}, at]) for data in calls])
        if not isinstance(answers, list) or len(answers) != len(calls):
            raise TransactionFailed(f"{self.rpc_url} answered a batch of {len(calls)} calls with {answers!r:.200}")
        out: list[bytes] = []
        for answer in sorted(answers, key=lambda a: int(a.get("id", 0))):
            result = answer.get("result")
            if not isinstance(result, str) or not result.startswith("0x"):
                raise TransactionFailed(f"a batched call to {target} failed: {answer.get('error', answer)!r}")
            out.append(bytes.fromhex(result[2:]))
        return out

    def call_raw(self, to: str, data: bytes, *, block: BlockIdentifier = "latest") -> bytes:
        """Run pre-encoded calldata against ``to`` at ``block`` and return the raw result.

        For hot paths: web3's per-argument validation costs more than the call itself on
        large arrays. Reverts are decoded as in :meth:`call`.
        """
        try:
            return bytes(self.w3.eth.call({"to": Web3.to_checksum_address(to), "data": HexBytes(data)}, block))
        except (ContractLogicError, Web3RPCError) as exc:
            if block != "latest" and _is_pruned(exc):
                raise StateUnavailable(f"{self.rpc_url} no longer keeps the state of block {block!r}") from exc
            raise self._decoded(exc, to) from exc

    def transact(self, account: LocalAccount, fn: ContractFunction) -> TxResult:
        """Sign and send a call of ``fn`` from ``account``; wait until it is mined.

        Raises:
            ContractRevert: the call reverts (detected while estimating gas, before sending).
            TransactionFailed: mined but failed, or not mined within the timeout.
        """
        return self._send(account, fn, self.contract_name(fn.address))

    def transact_raw(self, account: LocalAccount, to: str, data: bytes) -> TxResult:
        """Sign and send pre-encoded calldata ``data`` to ``to`` from ``account``; wait until it is mined.

        For hot paths, as :meth:`call_raw`: web3 validates and encodes a large array argument
        slower than the node runs the transaction. Gas is estimated, and refusals decoded, as
        in :meth:`transact`.

        Raises:
            ContractRevert: the call reverts (detected while estimating gas, before sending).
            TransactionFailed: mined but failed, or not mined within the timeout.
        """
        target = Web3.to_checksum_address(to)
        tx = {
            "from": account.address,
            "to": target,
            "data": HexBytes(data),
            "chainId": self.chain_id,
            "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
            "gasPrice": self.w3.eth.gas_price,
        }
        try:
            tx["gas"] = gas_limit_for(int(self.w3.eth.estimate_gas(tx)))  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._decoded(exc, target) from exc
        return self._submit(account, tx, self.contract_name(target))

    def send_value(self, account: LocalAccount, to: str, wei: int) -> TxResult:
        """Transfer ``wei`` from ``account`` to ``to`` (to fund a new actor)."""
        tx = {
            "to": Web3.to_checksum_address(to),
            "value": wei,
            "from": account.address,
            "chainId": self.chain_id,
            "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
            "gasPrice": self.w3.eth.gas_price,
        }
        tx["gas"] = self.w3.eth.estimate_gas(tx)  # type: ignore[arg-type]
        return self._submit(account, tx, None)

    def sign_raw(self, account: LocalAccount, to: str, data: bytes, *, nonce: int | None = None,
                 gas: int | None = None) -> SignedTx:
        """Sign pre-encoded calldata ``data`` to ``to`` from ``account`` without sending it.

        The gas limit is ``gas`` if given (a bound the caller knows: the node then need not run the
        call once more to estimate it), else estimated now with a margin.

        For senders that must store a transaction before it leaves (an outbox): the stored raw
        bytes can be broadcast again after a crash, and they hash to the same transaction, so it
        is never mined twice.

        Raises:
            ContractRevert: the call reverts on the current state (while estimating gas).
        """
        target = Web3.to_checksum_address(to)
        tx: Any = {
            "from": account.address, "to": target, "data": HexBytes(data), "chainId": self.chain_id,
            "nonce": self.w3.eth.get_transaction_count(account.address, "pending") if nonce is None else nonce,
            "gasPrice": self.w3.eth.gas_price,
        }
        if gas is not None:
            tx["gas"] = gas
        else:
            try:
                tx["gas"] = gas_limit_for(int(self.w3.eth.estimate_gas(tx)))
            except (ContractLogicError, Web3RPCError) as exc:
                raise self._decoded(exc, target) from exc
        signed = account.sign_transaction(tx)
        return SignedTx(HexBytes(signed.hash).to_0x_hex(), bytes(signed.raw_transaction), account.address,
                        int(tx["nonce"]))

    def broadcast(self, signed: SignedTx) -> None:
        """Send a signed transaction; sending one the node already holds or mined is not an error."""
        try:
            self.w3.eth.send_raw_transaction(signed.raw)
        except Web3RPCError as exc:
            text = _rpc_message(exc).lower()
            if "already known" in text or "already imported" in text or "nonce too low" in text:
                return  # the node has it, or mined it (or another with its nonce: receipt() tells)
            raise TransactionFailed(f"the node refused transaction {signed.tx_hash}: {_rpc_message(exc)}") from exc

    def receipt(self, tx_hash: str) -> TxResult | None:
        """The mined transaction ``tx_hash`` with its decoded events, or None while it is not mined.

        Raises:
            ContractRevert: it was mined and reverted (the reason replayed and decoded).
        """
        # Plain JSON-RPC, without web3's result formatters: on a batch's receipt with a hundred
        # events they cost more than reading it (the relay reads one per batch).
        answer = self._provider.make_request(RPCEndpoint("eth_getTransactionReceipt"), [tx_hash])
        if "error" in answer:
            raise TransactionFailed(f"{self.rpc_url} refused to give the receipt of {tx_hash}: {answer['error']!r}")
        raw = answer.get("result")
        if raw is None:
            return None
        if int(raw["status"], 16) == 1:
            return TxResult(
                tx_hash=tx_hash, block_number=int(raw["blockNumber"], 16), gas_used=int(raw["gasUsed"], 16),
                events=decode_logs(self, [_log_of(log) for log in raw["logs"]]),
                contract_address=Web3.to_checksum_address(raw["contractAddress"]) if raw.get("contractAddress")
                else None)
        try:
            receipt = self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except TransactionNotFound:
            return None
        if receipt["status"] != 1:
            tx = self.w3.eth.get_transaction(HexBytes(tx_hash))
            self._raise_mined_failure(tx, receipt, self.contract_name(tx["to"]) if tx.get("to") else None)
        return self._result(tx_hash, receipt)

    def pending_nonce(self, address: str) -> int:
        """The nonce the next transaction of ``address`` takes, counting ones waiting to be mined."""
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending"))

    def mined_nonce(self, address: str) -> int:
        """How many transactions of ``address`` are mined (the nonce of the next one to be mined)."""
        return int(self.w3.eth.get_transaction_count(Web3.to_checksum_address(address), "latest"))

    def balance(self, address: str, *, block: BlockIdentifier = "latest") -> int:
        """The balance of ``address`` in wei, at ``block``."""
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address), block))

    def fee_per_gas(self) -> FeePerGas:
        """What a transaction sent now with :meth:`transact` pays per unit of gas, and the most it may.

        As web3 fills in the fees of such a transaction on a chain with EIP-1559 (the latest block
        has a base fee): a tip of ``eth_maxPriorityFeePerGas`` and a fee cap of that tip plus twice
        the base fee. On a chain without base fees, ``eth_gasPrice``, the price of a legacy
        transaction (what :meth:`transact_raw`, :meth:`send_value` and :meth:`sign_raw` send).
        """
        base = self.w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            price = int(self.w3.eth.gas_price)
            return FeePerGas(per_gas=price, max_per_gas=price)
        tip = int(self.w3.eth.max_priority_fee)
        return FeePerGas(per_gas=int(base) + tip, max_per_gas=tip + 2 * int(base), base_fee=int(base), tip=tip)

    @property
    def block_number(self) -> int:
        """The number of the latest block."""
        return int(self.w3.eth.block_number)

    # ------------------------------------------------------------------ internals

    def _send(self, account: LocalAccount, fn: Any, contract: str | None) -> TxResult:
        try:
            base = {
                "from": account.address,
                "chainId": self.chain_id,
                "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
            }
            tx = fn.build_transaction({**base, "gas": gas_limit_for(int(fn.estimate_gas(base)))})
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._decoded(exc, getattr(fn, "address", None)) from exc
        return self._submit(account, tx, contract)

    def _submit(self, account: LocalAccount, tx: Any, contract: str | None) -> TxResult:

        signed = account.sign_transaction(tx)
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=self.timeout)
        except TimeExhausted as exc:
            raise TransactionFailed(f"transaction not mined within {self.timeout} s: {exc}") from exc
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._decoded(exc, tx.get("to")) from exc
        if receipt["status"] != 1:
            self._raise_mined_failure(tx, receipt, contract)
        return self._result(HexBytes(tx_hash).to_0x_hex(), receipt)

    def _result(self, tx_hash: str, receipt: Any) -> TxResult:
        address = receipt.get("contractAddress")
        return TxResult(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=decode_logs(self, receipt["logs"]),
            contract_address=Web3.to_checksum_address(address) if address else None,
        )

    def _raise_mined_failure(self, tx: Any, receipt: Any, contract: str | None) -> None:
        # Replay the call on the state before its block to recover the revert reason.
        replay = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
        if "data" not in replay and "input" in tx:  # read back from the node, the calldata is "input"
            replay["data"] = tx["input"]
        try:
            self.w3.eth.call(replay, int(receipt["blockNumber"]) - 1)  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._decoded(exc, tx.get("to")) from exc
        raise TransactionFailed(
            f"transaction {HexBytes(receipt['transactionHash']).to_0x_hex()} to {contract} failed "
            f"(gas used {receipt['gasUsed']} of {tx.get('gas')}) without a revert reason"
        )

    def _decoded(self, exc: Exception, address: str | None) -> ChainError:
        data = _revert_data(exc)
        name = self.contract_name(address) if address else None
        if data is None:
            target = name or address or "a contract creation"
            return TransactionFailed(f"call to {target} failed: {_rpc_message(exc)}")
        return decode_revert(data, name)
