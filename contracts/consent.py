"""Typed client of ``ConsentRegistry``: grant, revoke, relay signatures, ask who permits a use."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode, encode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from contracts import eip712
from contracts.base import BlockId, ContractClient
from contracts.chain import TxResult
from contracts.datause import Kind, Scope, Use
from contracts.errors import ChainError, ContractRevert, UnknownRevert
from contracts.events import ConsentRelayFailed
from contracts.mirrors import build, function_outputs

_USE_TYPE = "(address,uint8,uint8,uint32,uint256)"
_PERMITS_BATCH = keccak(text=f"permitsBatch(address[],{_USE_TYPE})")[:4]
_NONCES = keccak(text="nonces(address)")[:4]
_SCOPE_TYPE = "(address,uint8,uint32,uint256)"
#: ConsentRegistry.GrantBySig / RevokeBySig: grantBySig's / revokeBySig's arguments.
_GRANT_ITEMS = f"(address,{_SCOPE_TYPE},uint8,uint64,uint256,uint256,uint8,bytes32,bytes32)[]"
_REVOKE_ITEMS = f"(address,{_SCOPE_TYPE},uint256,uint256,uint8,bytes32,bytes32)[]"
_GRANT_BATCH = keccak(text=f"grantBySigBatch({_GRANT_ITEMS})")[:4]
_REVOKE_BATCH = keccak(text=f"revokeBySigBatch({_REVOKE_ITEMS})")[:4]


#: Gas limit of a relay batch: this, plus BATCH_GAS_PER_ITEM for each consent in it (see ConsentClient.batch_gas).
BATCH_GAS_BASE = 60_000
BATCH_GAS_PER_ITEM = 90_000

class BatchChunkError(ChainError, ValueError):
    """A batch call was asked with a chunk size that cannot cover the list."""


@dataclass(frozen=True)
class ConsentRecord:
    """A consent as stored: covered kinds, expiry, and the blocks it was granted/revoked in."""

    kinds: Kind
    expires_at: int
    granted_at_block: int
    revoked_at_block: int

    @property
    def exists(self) -> bool:
        """Whether the consent was ever granted."""
        return self.granted_at_block != 0


@dataclass(frozen=True)
class RelayOutcome:
    """What became of one signed consent in :meth:`ConsentClient.relay_batch`.

    Attributes:
        signed: the signed grant or revocation.
        tx_hash: the batch transaction it was relayed in (refused or not).
        failure: None if it took effect; else why the registry refused it, decoded (a
            ContractRevert, or an UnknownRevert keeping data that matches no known error).
    """

    signed: eip712.SignedConsent
    tx_hash: str
    failure: ContractRevert | UnknownRevert | None = None

    @property
    def ok(self) -> bool:
        """Whether the grant or revocation took effect."""
        return self.failure is None

    @property
    def error(self) -> str | None:
        """The name of the custom error it was refused with (None if it took effect)."""
        return self.failure.error if isinstance(self.failure, ContractRevert) else None

    @property
    def values(self) -> dict[str, Any]:
        """The arguments of that custom error, by name (empty if it took effect)."""
        return self.failure.values if isinstance(self.failure, ContractRevert) else {}


@dataclass(frozen=True)
class BatchRelayResult:
    """The outcome of every signed consent given to :meth:`ConsentClient.relay_batch`, in order,
    and the transactions that carried them."""

    outcomes: tuple[RelayOutcome, ...]
    transactions: tuple[TxResult, ...]

    @property
    def relayed(self) -> list[RelayOutcome]:
        """The outcomes that took effect."""
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[RelayOutcome]:
        """The outcomes the registry refused, each with its reason."""
        return [o for o in self.outcomes if not o.ok]

    @property
    def gas_used(self) -> int:
        """The gas of all the transactions together."""
        return sum(tx.gas_used for tx in self.transactions)


def _relay_args(signed: eip712.SignedConsent) -> tuple[Any, ...]:
    """The arguments of grantBySig or revokeBySig (and the fields of a batch item) for ``signed``."""
    tail = (signed.nonce, signed.deadline, signed.v, signed.r, signed.s)
    if signed.kinds is None or signed.expires_at is None:
        return (signed.patient, signed.scope.as_tuple(), *tail)
    return (signed.patient, signed.scope.as_tuple(), int(signed.kinds), signed.expires_at, *tail)


def _batches(signed: Sequence[eip712.SignedConsent], size: int) -> Iterator[list[eip712.SignedConsent]]:
    """``signed`` in order, cut into runs of one kind (grant or revoke), each cut into ``size``-long parts."""
    for _, run in itertools.groupby(signed, key=lambda s: s.kinds is None):
        items = list(run)
        for i in range(0, len(items), size):
            yield items[i : i + size]


class ConsentClient(ContractClient):
    """The registry of patients' consents."""

    artifact = "ConsentRegistry"
    #: Patients per eth_call in :meth:`permits_batch`: a worst-case use (disease-specific, one
    #: hospital, one study) checks 12 consent slots per patient, about 30k gas, so 500 patients
    #: stay near 16M gas, under the 30M+ eth_call caps of Anvil, geth and Besu.
    BATCH_CHUNK = 500
    #: Signed consents per transaction in :meth:`relay_batch`: the registry's MAX_RELAY_BATCH, the
    #: most it takes (a full batch of first grants costs about 12M gas).
    RELAY_CHUNK = 200

    # ---------------------------------------------------------------- direct

    def grant(self, patient: LocalAccount, scope: Scope, kinds: Kind, expires_at: int) -> TxResult:
        """Grant consent from the patient's own address (they pay the gas)."""
        return self._send(patient, "grant", scope.as_tuple(), int(kinds), expires_at)

    def revoke(self, patient: LocalAccount, scope: Scope) -> TxResult:
        """Revoke the patient's consent under ``scope``, effective from the block it is mined in.

        This also consumes the patient's current nonce, so a signature made with it can no
        longer be relayed; a signature with a later nonce still can (see :meth:`cancel_signatures`).
        """
        return self._send(patient, "revoke", scope.as_tuple())

    def cancel_signatures(self, patient: LocalAccount, up_to: int) -> TxResult:
        """Consume the patient's nonces below ``up_to``: no signature made with one can be relayed any more.

        Pass one more than the highest nonce the patient signed with to kill every outstanding
        signature; consents granted or revoked stay as they are.

        Raises:
            ContractRevert: ``ConsentRegistryNothingToCancel`` if ``up_to`` is not above the
                patient's nonce, ``ConsentRegistryTooManyToCancel`` if it is more than 256 above.
        """
        return self._send(patient, "cancelSignatures", up_to)

    # ---------------------------------------------------------------- signed + relayed

    def sign_grant(
        self, patient: LocalAccount, scope: Scope, kinds: Kind, expires_at: int,
        *, deadline: int | None = None, nonce: int | None = None,
    ) -> eip712.SignedConsent:
        """Sign a grant with the patient's key (nonce read from chain; deadline default 1 h)."""
        return eip712.sign_grant(
            patient,
            chain_id=self.chain.chain_id,
            registry=self.address,
            scope=scope,
            kinds=kinds,
            expires_at=expires_at,
            nonce=self.nonce(patient.address) if nonce is None else nonce,
            deadline=int(time.time()) + 3600 if deadline is None else deadline,
        )

    def sign_revoke(
        self, patient: LocalAccount, scope: Scope, *, deadline: int | None = None, nonce: int | None = None
    ) -> eip712.SignedConsent:
        """Sign a revocation with the patient's key."""
        return eip712.sign_revoke(
            patient,
            chain_id=self.chain.chain_id,
            registry=self.address,
            scope=scope,
            nonce=self.nonce(patient.address) if nonce is None else nonce,
            deadline=int(time.time()) + 3600 if deadline is None else deadline,
        )

    def relay(self, relayer: LocalAccount, signed: eip712.SignedConsent) -> TxResult:
        """Send a patient's signed grant or revocation; ``relayer`` pays the gas."""
        fn = "revokeBySig" if signed.kinds is None else "grantBySig"
        return self._send(relayer, fn, *_relay_args(signed))

    @staticmethod
    def batch_gas(items: int) -> int:
        """A gas limit that covers a relay batch of ``items`` consents, of either kind, each succeeding or not.

        Measured (benchmarks/results/gas.json): a patient's first grant, the dearest item, costs
        82,821 gas alone in a batch (transaction base cost included) and 60,652 each in a batch
        of 200. The bound leaves half again on top; only the gas used is paid.
        """
        return BATCH_GAS_BASE + BATCH_GAS_PER_ITEM * items

    def batch_calldata(self, signed: Sequence[eip712.SignedConsent]) -> bytes:
        """The calldata of ``grantBySigBatch`` or ``revokeBySigBatch`` relaying ``signed`` (all of one kind).

        Encoded here, not by web3, whose per-argument validation of 200 items takes longer than
        the node takes to run them. For a sender that signs and stores the transaction before it
        leaves (the coordinator's relay outbox, with :meth:`Chain.sign_raw`); :meth:`relay_batch`
        sends it at once.

        Raises:
            ValueError: ``signed`` is empty or mixes grants and revocations.
        """
        kinds = {s.kinds is None for s in signed}
        if len(kinds) != 1:
            raise ValueError(f"a batch holds grants only or revocations only, and at least one; got {len(signed)} "
                             f"signed consents of {len(kinds)} kinds")
        selector, items = (_REVOKE_BATCH, _REVOKE_ITEMS) if kinds == {True} else (_GRANT_BATCH, _GRANT_ITEMS)
        return selector + encode([items], [[_relay_args(s) for s in signed]])

    def relay_batch(
        self, relayer: LocalAccount, signed: Sequence[eip712.SignedConsent], *, chunk: int | None = None
    ) -> BatchRelayResult:
        """Send many signed grants and revocations in few transactions; ``relayer`` pays the gas.

        The list is sent in order: each run of consecutive grants goes to ``grantBySigBatch``
        and each run of revocations to ``revokeBySigBatch``, ``chunk`` per transaction, so a
        patient's signatures are relayed in the order of their nonces. Each signature is
        attempted on its own: a refused one (bad or foreign signature, replay, passed deadline)
        is reported with its custom error, and the others take effect. An empty list sends
        nothing.

        Parameters:
            chunk: signatures per transaction (default :attr:`RELAY_CHUNK`, the registry's most).

        Returns:
            One outcome per signed consent, in the order given, and the transactions sent.

        Raises:
            BatchChunkError: ``chunk`` is below 1.
            ContractRevert: a whole transaction was refused (``ConsentRegistryBatchTooLarge`` for a
                chunk above the registry's most); the transactions before it are mined.
        """
        size = self.RELAY_CHUNK if chunk is None else chunk
        if size < 1:
            raise BatchChunkError(
                f"chunk of {size} signatures per transaction; expected at least 1 (or None for {self.RELAY_CHUNK})"
            )
        outcomes: list[RelayOutcome] = []
        transactions: list[TxResult] = []
        for batch in _batches(signed, size):
            # Encoded here, not by web3, whose per-argument validation of 200 items takes longer
            # than the node takes to run them.
            tx = self.chain.transact_raw(relayer, self.address, self.batch_calldata(batch))
            refused = {e.index: e.failure for e in tx.events if isinstance(e, ConsentRelayFailed)}
            outcomes.extend(RelayOutcome(s, tx.tx_hash, refused.get(i)) for i, s in enumerate(batch))
            transactions.append(tx)
        return BatchRelayResult(tuple(outcomes), tuple(transactions))

    # ---------------------------------------------------------------- views

    def nonce(self, patient: str) -> int:
        """The patient's next signature nonce (encoded here: asked once per signed consent the coordinator accepts)."""
        answer = self.chain.call_raw(self.address, _NONCES + encode(["address"], [to_checksum_address(patient)]))
        return int.from_bytes(answer[:32], "big")

    def nonces(self, patients: Sequence[str]) -> dict[str, int]:
        """Each patient's next signature nonce, asked in one JSON-RPC batch (each as of the latest block)."""
        checked = [to_checksum_address(p) for p in patients]
        answers = self.chain.call_raw_many(self.address, [_NONCES + encode(["address"], [p]) for p in checked])
        return {p: int.from_bytes(a[:32], "big") for p, a in zip(checked, answers, strict=True)}

    def consent_id(self, patient: str, scope: Scope) -> bytes:
        """The id of ``patient``'s consent under ``scope``."""
        return bytes(self._call("consentId", patient, scope.as_tuple()))

    def consent_of(self, patient: str, scope: Scope, *, block: BlockId = "latest") -> ConsentRecord:
        """The stored consent of ``patient`` under ``scope`` (``exists`` False if never granted)."""
        fields = self._call("consentOf", patient, scope.as_tuple(), block=block)
        return build(ConsentRecord, function_outputs(self.artifact, "consentOf"), fields)

    def permits(self, patient: str, use: Use, *, block: BlockId = "latest") -> bool:
        """Whether ``patient`` permits ``use`` at ``block``."""
        return bool(self._call("permits", patient, use.as_tuple(), block=block))

    def permits_batch(
        self, patients: list[str], use: Use, *, block: BlockId = "latest", chunk: int | None = None
    ) -> list[bool]:
        """For each patient, whether they permit ``use`` at ``block``; one call per chunk.

        ``block`` is resolved to a number first so that every chunk sees the same state.

        Parameters:
            chunk: patients per call (default :attr:`BATCH_CHUNK`).

        Raises:
            BatchChunkError: ``chunk`` is below 1 (a negative step would answer for nobody).
        """
        size = self.BATCH_CHUNK if chunk is None else chunk
        if size < 1:
            raise BatchChunkError(
                f"chunk of {size} patients per call; expected at least 1 (or None for {self.BATCH_CHUNK})"
            )
        at = self.chain.block_number if block == "latest" else block
        checked = [to_checksum_address(p) for p in patients]  # validates every address once
        out: list[bool] = []
        for i in range(0, len(checked), size):
            data = _PERMITS_BATCH + encode(["address[]", _USE_TYPE], [checked[i : i + size], use.as_tuple()])
            (answers,) = decode(["bool[]"], self.chain.call_raw(self.address, data, block=at))
            out.extend(bool(x) for x in answers)
        return out

    def explain(self, patient: str, use: Use, *, block: BlockId = "latest") -> None:
        """Return if ``patient`` permits ``use``; else raise the ContractRevert that says why."""
        self._call("explain", patient, use.as_tuple(), block=block)
