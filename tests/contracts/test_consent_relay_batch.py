"""Batch relay of signed consents: every item attempted on its own, the good ones take effect, each
bad one is reported with its custom error, and a batch is bounded (ConsentRegistry, docs/contracts.md)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from eth_abi.abi import decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from contracts import eip712
from contracts.consent import BatchChunkError, BatchRelayResult, ConsentClient
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.errors import ChainError, ContractRevert, TransactionFailed
from contracts.events import ConsentGranted, ConsentRelayFailed, ConsentRevoked, short
from contracts.exchange import Exchange
from contracts.reverts import decode_revert

HMB = Scope(purpose=Purpose.HMB)
GRU = Scope(purpose=Purpose.GRU)
MAX_BATCH = 200  # ConsentRegistry.MAX_RELAY_BATCH
FAR = 2**40  # a deadline far in the future


def _item(signed: eip712.SignedConsent) -> tuple[Any, ...]:
    """A signed grant as a GrantBySig batch item: grantBySig's arguments, in order."""
    assert signed.kinds is not None
    return (signed.patient, signed.scope.as_tuple(), int(signed.kinds), signed.expires_at, signed.nonce,
            signed.deadline, signed.v, signed.r, signed.s)


def _forged(consent: ConsentClient, patient: str, impostor: LocalAccount) -> eip712.SignedConsent:
    """A grant for ``patient`` signed by ``impostor``."""
    typed = eip712.grant_typed_data(consent.chain.chain_id, consent.address, patient, HMB, Kind.IMAGE, NO_EXPIRY,
                                    0, FAR)
    sig = impostor.sign_message(encode_typed_data(full_message=typed))
    return eip712.SignedConsent(patient, HMB, 0, FAR, sig.v, sig.r.to_bytes(32, "big"), sig.s.to_bytes(32, "big"),
                                Kind.IMAGE, NO_EXPIRY)


@dataclass(frozen=True)
class Mixed:
    """A mixed batch relayed in one transaction: items 0 and 5 good, 1-4 bad as named."""

    result: BatchRelayResult
    patients: list[LocalAccount]  # one per item
    impostor: LocalAccount
    expired_deadline: int
    mined_at: int  # the block's timestamp


BAD = {  # item index -> what is wrong with it
    1: "replayed",
    2: "expired",
    3: "foreign signer",
    4: "malformed signature",
}


@pytest.fixture
def mixed(exchange: Exchange, actors, now) -> Mixed:
    consent = exchange.consent
    patients = [Account.create() for _ in range(6)]
    impostor = Account.create()

    def grant(i: int, **kw: Any) -> eip712.SignedConsent:
        return consent.sign_grant(patients[i], HMB, Kind.IMAGE, NO_EXPIRY, nonce=0, deadline=kw.get("deadline", FAR))

    replayed = grant(1)
    consent.relay(actors.coordinator, replayed)  # its nonce is used before the batch
    high_s = (2**256 - 1).to_bytes(32, "big")  # above secp256k1n/2: rejected as malleable
    items = [grant(0), replayed, grant(2, deadline=now - 1), _forged(consent, patients[3].address, impostor),
             dataclasses.replace(grant(4), s=high_s), grant(5)]
    result = consent.relay_batch(actors.coordinator, items)
    (tx,) = result.transactions
    mined_at = int(exchange.chain.w3.eth.get_block(tx.block_number)["timestamp"])
    return Mixed(result, patients, impostor, now - 1, mined_at)


# ---------------------------------------------------------------- a mixed batch


def test_the_good_items_of_a_mixed_batch_are_granted(exchange: Exchange, mixed: Mixed) -> None:
    (tx,) = mixed.result.transactions
    granted = [e.patient for e in tx.events if isinstance(e, ConsentGranted)]
    assert granted == [mixed.patients[0].address, mixed.patients[5].address]
    assert [o.ok for o in mixed.result.outcomes] == [True, False, False, False, False, True]
    for i in (0, 5):
        assert exchange.consent.consent_of(mixed.patients[i].address, HMB).granted_at_block == tx.block_number
        assert exchange.consent.nonce(mixed.patients[i].address) == 1


def test_each_bad_item_of_a_mixed_batch_is_reported_with_its_custom_error(mixed: Mixed) -> None:
    patient = [p.address for p in mixed.patients]
    found = {i: (o.error, o.values) for i, o in enumerate(mixed.result.outcomes) if not o.ok}
    assert found == {
        1: ("InvalidAccountNonce", {"account": patient[1], "currentNonce": 1}),
        2: ("ConsentRegistryExpiredSignature", {"deadline": mixed.expired_deadline, "nowTimestamp": mixed.mined_at}),
        3: ("ConsentRegistryInvalidSigner", {"signer": mixed.impostor.address, "patient": patient[3]}),
        4: ("ConsentRegistryInvalidSignature", {"patient": patient[4]}),
    }


def test_each_bad_item_emits_a_failure_event_with_its_index_nonce_and_revert_data(mixed: Mixed) -> None:
    (tx,) = mixed.result.transactions
    failed = [e for e in tx.events if isinstance(e, ConsentRelayFailed)]
    assert [(e.index, e.patient, e.nonce) for e in failed] == [(i, mixed.patients[i].address, 0) for i in BAD]
    assert [e.failure.error for e in failed if isinstance(e.failure, ContractRevert)] == [
        "InvalidAccountNonce", "ConsentRegistryExpiredSignature", "ConsentRegistryInvalidSigner",
        "ConsentRegistryInvalidSignature"]
    assert failed[0].reason[:4] == bytes.fromhex("752d88c0")  # InvalidAccountNonce(address,uint256)


def test_the_bad_items_of_a_mixed_batch_change_nothing(exchange: Exchange, mixed: Mixed) -> None:
    consent = exchange.consent
    assert consent.nonce(mixed.patients[1].address) == 1  # used by its first relay, not again
    for i in (2, 3, 4):
        assert consent.nonce(mixed.patients[i].address) == 0
        assert not consent.consent_of(mixed.patients[i].address, HMB).exists


def test_the_outcomes_name_their_signed_consent_and_transaction(mixed: Mixed) -> None:
    (tx,) = mixed.result.transactions
    assert [o.signed.patient for o in mixed.result.outcomes] == [p.address for p in mixed.patients]
    assert {o.tx_hash for o in mixed.result.outcomes} == {tx.tx_hash}
    assert mixed.result.relayed == [mixed.result.outcomes[0], mixed.result.outcomes[5]]
    assert mixed.result.failed == [mixed.result.outcomes[i] for i in BAD]
    assert mixed.result.gas_used == tx.gas_used
    assert (mixed.result.outcomes[0].error, mixed.result.outcomes[0].values) == (None, {})


def test_the_batch_returns_a_flag_per_item(exchange: Exchange, actors) -> None:
    consent = exchange.consent
    good = consent.sign_grant(Account.create(), HMB, Kind.IMAGE, NO_EXPIRY, deadline=FAR)
    forged = _forged(consent, Account.create().address, Account.create())
    items = [_item(s) for s in (forged, good, forged)]
    call = consent.contract.functions.grantBySigBatch(items)
    assert exchange.chain.call(call) == [False, True, False]


def test_a_refused_item_is_described_for_people(mixed: Mixed) -> None:
    (tx,) = mixed.result.transactions
    event = next(e for e in tx.events if isinstance(e, ConsentRelayFailed))
    assert event.describe() == (
        f"batch item 1, patient {short(mixed.patients[1].address)}'s signature with nonce 0, was refused: "
        f"InvalidAccountNonce(account={mixed.patients[1].address!r}, currentNonce=1) in ConsentRegistry")


# ---------------------------------------------------------------- revocations, mixed kinds, chunks


def test_a_batch_of_revocations_revokes_the_good_ones_and_reports_the_others(exchange: Exchange, actors) -> None:
    consent = exchange.consent
    granted, never = Account.create(), Account.create()
    consent.relay(actors.coordinator, consent.sign_grant(granted, HMB, Kind.IMAGE, NO_EXPIRY))
    items = [consent.sign_revoke(never, HMB), consent.sign_revoke(granted, HMB)]
    result = consent.relay_batch(actors.coordinator, items)
    (tx,) = result.transactions
    assert [e.patient for e in tx.events if isinstance(e, ConsentRevoked)] == [granted.address]
    assert [(o.ok, o.error) for o in result.outcomes] == [(False, "ConsentRegistryNotGranted"), (True, None)]
    assert result.outcomes[0].values == {"patient": never.address, "consentId": consent.consent_id(never.address, HMB)}
    assert consent.consent_of(granted.address, HMB).revoked_at_block == tx.block_number


def test_grants_and_revocations_are_relayed_in_the_order_given(exchange: Exchange, actors) -> None:
    """A patient's grant, revocation and new grant (nonces 0, 1, 2) go in three transactions, in order."""
    consent = exchange.consent
    patient = Account.create()
    items = [consent.sign_grant(patient, HMB, Kind.IMAGE, NO_EXPIRY, nonce=0),
             consent.sign_revoke(patient, HMB, nonce=1),
             consent.sign_grant(patient, GRU, Kind.IMAGE, NO_EXPIRY, nonce=2)]
    result = consent.relay_batch(actors.coordinator, items)
    assert [o.ok for o in result.outcomes] == [True, True, True]
    kinds = [[type(e) for e in tx.events] for tx in result.transactions]
    assert kinds == [[ConsentGranted], [ConsentRevoked], [ConsentGranted]]
    assert consent.consent_of(patient.address, HMB).revoked_at_block == result.transactions[1].block_number
    assert consent.nonce(patient.address) == 3


def test_a_long_list_is_sent_in_chunks_and_each_outcome_stays_at_its_place(exchange: Exchange, actors) -> None:
    consent = exchange.consent
    items = [consent.sign_grant(Account.create(), HMB, Kind.IMAGE, NO_EXPIRY, nonce=0, deadline=FAR) for _ in range(5)]
    items[3] = _forged(consent, items[3].patient, Account.create())
    result = consent.relay_batch(actors.coordinator, items, chunk=2)
    assert len(result.transactions) == 3
    assert [o.ok for o in result.outcomes] == [True, True, True, False, True]
    assert result.outcomes[3].tx_hash == result.transactions[1].tx_hash
    assert result.outcomes[3].values["patient"] == items[3].patient
    assert [o.signed for o in result.outcomes] == items


@pytest.mark.parametrize("chunk", [0, -1])
def test_a_chunk_below_one_is_refused_before_anything_is_sent(exchange: Exchange, actors, chunk: int) -> None:
    before = exchange.chain.block_number
    signed = exchange.consent.sign_grant(Account.create(), HMB, Kind.IMAGE, NO_EXPIRY)
    with pytest.raises(BatchChunkError, match=f"chunk of {chunk} signatures per transaction; expected at least 1"):
        exchange.consent.relay_batch(actors.coordinator, [signed], chunk=chunk)
    assert exchange.chain.block_number == before


# ---------------------------------------------------------------- bounds


def test_a_batch_over_the_maximum_is_refused_whole(exchange: Exchange, actors, expect_revert) -> None:
    signed = exchange.consent.sign_grant(Account.create(), HMB, Kind.IMAGE, NO_EXPIRY)
    with expect_revert("ConsentRegistryBatchTooLarge", size=MAX_BATCH + 1, maxSize=MAX_BATCH):
        exchange.consent.relay_batch(actors.coordinator, [signed] * (MAX_BATCH + 1), chunk=MAX_BATCH + 1)
    assert exchange.consent.nonce(signed.patient) == 0


def test_a_revocation_batch_over_the_maximum_is_refused_whole(exchange: Exchange, actors, expect_revert) -> None:
    signed = exchange.consent.sign_revoke(Account.create(), HMB)
    with expect_revert("ConsentRegistryBatchTooLarge", size=MAX_BATCH + 1, maxSize=MAX_BATCH):
        exchange.consent.relay_batch(actors.coordinator, [signed] * (MAX_BATCH + 1), chunk=MAX_BATCH + 1)


def test_a_batch_of_the_maximum_is_accepted(exchange: Exchange, actors) -> None:
    """The same signature 200 times: the first is granted, the 199 others are replays."""
    signed = exchange.consent.sign_grant(Account.create(), HMB, Kind.IMAGE, NO_EXPIRY)
    result = exchange.consent.relay_batch(actors.coordinator, [signed] * MAX_BATCH)
    assert [o.ok for o in result.outcomes] == [True] + [False] * (MAX_BATCH - 1)
    assert {o.error for o in result.failed} == {"InvalidAccountNonce"}


def test_the_client_chunk_is_the_registrys_maximum(exchange: Exchange) -> None:
    maximum = exchange.chain.call(exchange.consent.contract.functions.MAX_RELAY_BATCH())
    assert ConsentClient.RELAY_CHUNK == maximum == MAX_BATCH


@pytest.mark.parametrize("function", ["grantBySigBatch", "revokeBySigBatch"])
def test_an_empty_batch_returns_nothing_and_emits_nothing(exchange: Exchange, actors, function: str) -> None:
    call = exchange.consent.contract.functions[function]([])
    assert exchange.chain.call(call) == []
    assert exchange.chain.transact(actors.coordinator, call).events == []


def test_an_empty_list_sends_no_transaction(exchange: Exchange, actors) -> None:
    before = exchange.chain.block_number
    result = exchange.consent.relay_batch(actors.coordinator, [])
    assert result == BatchRelayResult((), ())
    assert exchange.chain.block_number == before


# ---------------------------------------------------------------- out of gas: the batch, never the item


def call_with_gas(exchange: Exchange, call: Any, gas: int) -> list[bool]:
    """Run the batch ``call`` as eth_call with a gas limit of ``gas``; return its flags or raise its revert
    (TransactionFailed for one without data: the whole call ran out of gas)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [
        {"to": call.address, "data": call._encode_transaction_data(), "gas": hex(gas)}, "latest"]}
    answer = requests.post(exchange.chain.rpc_url, json=body, timeout=10).json()
    if "error" in answer:
        data = answer["error"].get("data")
        if isinstance(data, dict):  # Hardhat's network nests the revert data beside its own message
            data = data.get("data")
        if not isinstance(data, str) or data == "0x":
            raise TransactionFailed(str(answer["error"]))
        raise decode_revert(bytes.fromhex(data[2:]))
    (flags,) = decode(["bool[]"], bytes.fromhex(answer["result"][2:]))
    return list(flags)


def _good_batch(exchange: Exchange, n: int) -> Any:
    items = [exchange.consent.sign_grant(Account.create(), HMB, Kind.IMAGE, NO_EXPIRY, nonce=0, deadline=FAR)
             for _ in range(n)]
    return exchange.consent.contract.functions.grantBySigBatch([_item(s) for s in items])


def _gas_limits_below(exchange: Exchange, call: Any) -> range:
    """Gas limits from 60,000 below the estimate up to it, every 250: each item of a small batch runs
    out of gas somewhere in there."""
    estimate = exchange.chain.w3.eth.estimate_gas({"to": call.address, "data": call._encode_transaction_data()})
    return range(estimate - 60_000, estimate + 1, 250)


def test_an_item_out_of_gas_is_never_reported_as_refused(exchange: Exchange) -> None:
    """Under every gas limit, a batch of good items succeeds whole or reverts whole: a relayer's low gas
    limit must not make a patient's signature look refused (nor let eth_estimateGas settle on such a limit)."""
    call = _good_batch(exchange, 2)
    outcomes: list[object] = []
    for gas in _gas_limits_below(exchange, call):
        try:
            outcomes.append(call_with_gas(exchange, call, gas))
        except ChainError as exc:
            outcomes.append(exc.error if isinstance(exc, ContractRevert) else type(exc).__name__)
    assert set(map(str, outcomes)) == {"[True, True]", "ConsentRegistryBatchOutOfGas", "TransactionFailed"}


def test_an_item_out_of_gas_reverts_the_batch_with_its_index(exchange: Exchange, expect_revert) -> None:
    call = _good_batch(exchange, 1)

    def item_ran_out(gas: int) -> bool:
        try:
            call_with_gas(exchange, call, gas)
        except ContractRevert:
            return True
        except TransactionFailed:
            return False
        return False

    gas = next(g for g in reversed(_gas_limits_below(exchange, call)) if item_ran_out(g))
    with expect_revert("ConsentRegistryBatchOutOfGas", index=0):
        call_with_gas(exchange, call, gas)


@pytest.mark.parametrize("size", [1, MAX_BATCH])
def test_the_relays_gas_bound_covers_a_batch_of_first_grants_then_revocations(exchange: Exchange, actors,
                                                                              size: int) -> None:
    """The dearest items (each a patient's first grant), and revocations of them, fit the bound the relay signs
    with instead of asking the node for an estimate."""
    consent = exchange.consent
    patients = [Account.create() for _ in range(size)]
    for batch in ([consent.sign_grant(p, HMB, Kind.IMAGE, NO_EXPIRY, nonce=0, deadline=FAR) for p in patients],
                  [consent.sign_revoke(p, HMB, nonce=1, deadline=FAR) for p in patients]):
        limit = consent.batch_gas(len(batch))
        tx = exchange.chain.sign_raw(actors.coordinator, consent.address, consent.batch_calldata(batch), gas=limit)
        exchange.chain.broadcast(tx)
        result = None
        for _ in range(300):  # mined at once by Anvil; a receipt may lag the answer to the broadcast
            result = exchange.chain.receipt(tx.tx_hash)
            if result is not None:
                break
            time.sleep(0.05)
        assert result is not None
        assert len([e for e in result.events if isinstance(e, (ConsentGranted, ConsentRevoked))]) == size
        assert result.gas_used < limit * 3 // 4  # a quarter of the bound, at least, to spare
    assert consent.batch_gas(MAX_BATCH) <= exchange.chain.w3.eth.get_block("latest")["gasLimit"]
