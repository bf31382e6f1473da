"""Patients kill signatures they made but no longer want relayed: a direct revoke consumes one
nonce, ``cancelSignatures`` every nonce below a bound (ConsentRegistry, docs/contracts.md)."""

from __future__ import annotations

import pytest
from eth_account import Account

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.events import ConsentGranted, ConsentRevoked, SignaturesCancelled, short
from contracts.exchange import Exchange

HMB = Scope(purpose=Purpose.HMB)
GRU = Scope(purpose=Purpose.GRU)
MAX_CANCEL = 256  # ConsentRegistry.MAX_CANCEL


# ---------------------------------------------------------------- a direct revoke consumes one nonce


def test_direct_revoke_kills_a_signed_grant_not_yet_relayed(exchange: Exchange, actors, expect_revert) -> None:
    """The audit's case: a renewal signed before the revoke must not put the consent back after it."""
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    renewal = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)  # nonce 0, not relayed
    revoked = exchange.consent.revoke(patient, HMB)
    with expect_revert("InvalidAccountNonce", account=patient.address, currentNonce=1):
        exchange.consent.relay(actors.coordinator, renewal)
    assert exchange.consent.consent_of(patient.address, HMB).revoked_at_block == revoked.block_number


def test_direct_revoke_emits_the_revocation_then_the_nonce_it_consumed(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    tx = exchange.consent.revoke(patient, HMB)
    assert [type(e) for e in tx.events] == [ConsentRevoked, SignaturesCancelled]
    cancelled = tx.event(SignaturesCancelled)
    assert (cancelled.patient, cancelled.from_nonce, cancelled.to_nonce) == (patient.address, 0, 1)
    assert exchange.consent.nonce(patient.address) == 1


def test_direct_revoke_makes_the_next_signature_relayable(exchange: Exchange, actors, expect_revert) -> None:
    """Why the portal must offer cancel: a revoke kills nonce n only, and the signature with n + 1,
    which could not be relayed before (nonces are used in order), can be relayed after it."""
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    first = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY, nonce=0)
    second = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY, nonce=1)
    with expect_revert("InvalidAccountNonce", account=patient.address, currentNonce=0):
        exchange.consent.relay(actors.coordinator, second)
    exchange.consent.revoke(patient, HMB)
    with expect_revert("InvalidAccountNonce", account=patient.address, currentNonce=1):
        exchange.consent.relay(actors.coordinator, first)
    regranted = exchange.consent.relay(actors.coordinator, second)
    assert exchange.consent.consent_of(patient.address, HMB).granted_at_block == regranted.block_number
    assert exchange.consent.consent_of(patient.address, HMB).revoked_at_block == 0


def test_a_refused_direct_revoke_consumes_no_nonce(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    with expect_revert("ConsentRegistryNotGranted", patient=patient.address):
        exchange.consent.revoke(patient, HMB)
    assert exchange.consent.nonce(patient.address) == 0


# ---------------------------------------------------------------- cancelSignatures


def test_cancel_kills_every_outstanding_signature(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    exchange.consent.cancel_signatures(patient, 2)  # start from n = 2, not from a fresh account
    n = exchange.consent.nonce(patient.address)
    grant = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY, nonce=n)
    other = exchange.consent.sign_grant(patient, GRU, Kind.IMAGE, NO_EXPIRY, nonce=n + 1)
    exchange.consent.cancel_signatures(patient, n + 2)
    for signed in (grant, other):
        with expect_revert("InvalidAccountNonce", account=patient.address, currentNonce=n + 2):
            exchange.consent.relay(actors.coordinator, signed)
    assert not exchange.consent.consent_of(patient.address, HMB).exists
    assert not exchange.consent.consent_of(patient.address, GRU).exists


def test_cancel_emits_the_range_it_consumed_and_moves_the_nonce(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.cancel_signatures(patient, 1)
    tx = exchange.consent.cancel_signatures(patient, 4)
    event = tx.event(SignaturesCancelled)
    assert (event.patient, event.from_nonce, event.to_nonce) == (patient.address, 1, 4)
    assert len(tx.events) == 1
    assert exchange.consent.nonce(patient.address) == 4


def test_cancel_leaves_consents_as_they_are(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    granted = exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    exchange.consent.cancel_signatures(patient, 3)
    record = exchange.consent.consent_of(patient.address, HMB)
    assert (record.granted_at_block, record.revoked_at_block) == (granted.block_number, 0)


def test_a_signature_made_after_cancelling_is_relayed(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.cancel_signatures(patient, 3)
    signed = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)  # reads the nonce: 3
    tx = exchange.consent.relay(actors.coordinator, signed)
    assert signed.nonce == 3
    assert tx.event(ConsentGranted).patient == patient.address
    assert exchange.consent.nonce(patient.address) == 4


def test_cancel_touches_only_the_callers_nonces(exchange: Exchange, actors) -> None:
    patient, other = actors.patients[0], actors.patients[1]
    waiting = exchange.consent.sign_grant(other, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    exchange.consent.cancel_signatures(patient, 5)
    assert exchange.consent.nonce(other.address) == 0
    assert exchange.consent.relay(actors.coordinator, waiting).event(ConsentGranted).patient == other.address


@pytest.mark.parametrize("up_to", [0, 1, 2])
def test_cancel_up_to_the_current_nonce_or_below_is_refused(exchange: Exchange, actors, expect_revert,
                                                            up_to: int) -> None:
    patient = actors.patients[0]
    exchange.consent.cancel_signatures(patient, 2)
    with expect_revert("ConsentRegistryNothingToCancel", patient=patient.address, upTo=up_to, currentNonce=2):
        exchange.consent.cancel_signatures(patient, up_to)


def test_cancel_of_more_nonces_than_the_maximum_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    exchange.consent.cancel_signatures(patient, 1)
    with expect_revert("ConsentRegistryTooManyToCancel", currentNonce=1, upTo=1 + MAX_CANCEL + 1,
                       maxCount=MAX_CANCEL):
        exchange.consent.cancel_signatures(patient, 1 + MAX_CANCEL + 1)


def test_cancel_of_exactly_the_maximum_is_accepted(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.cancel_signatures(patient, 1)
    tx = exchange.consent.cancel_signatures(patient, 1 + MAX_CANCEL)
    assert (tx.event(SignaturesCancelled).from_nonce, tx.event(SignaturesCancelled).to_nonce) == (1, 1 + MAX_CANCEL)
    assert exchange.consent.nonce(patient.address) == 1 + MAX_CANCEL


def test_the_maximum_is_the_registrys(exchange: Exchange) -> None:
    assert exchange.chain.call(exchange.consent.contract.functions.MAX_CANCEL()) == MAX_CANCEL


def test_a_cancellation_is_described_for_people() -> None:
    where = {"contract": "ConsentRegistry", "address": "0x" + "00" * 20, "block_number": 1, "tx_hash": "0x",
             "log_index": 0}
    patient = Account.create().address
    one = SignaturesCancelled(**where, patient=patient, from_nonce=4, to_nonce=5)
    many = SignaturesCancelled(**where, patient=patient, from_nonce=0, to_nonce=3)
    assert one.describe() == f"patient {short(patient)} cancelled any signature with nonce 4"
    assert many.describe() == f"patient {short(patient)} cancelled any signature with nonces 0 to 2"


def test_the_nonces_of_many_patients_come_in_one_batch_and_match_each_asked_alone(exchange, actors) -> None:  # type: ignore[no-untyped-def]
    first, second = actors.patients[0], actors.patients[1]
    exchange.consent.cancel_signatures(first, 3)
    asked = exchange.consent.nonces([first.address, second.address])
    assert asked == {first.address: 3, second.address: 0}
    assert asked == {p: exchange.consent.nonce(p) for p in asked}


def test_batched_calls_read_a_pinned_block_when_given_one_and_refuse_a_failing_call(exchange, actors) -> None:  # type: ignore[no-untyped-def]
    import pytest
    from eth_abi import encode

    from contracts.errors import TransactionFailed

    patient = actors.patients[0]
    before = exchange.chain.block_number
    exchange.consent.cancel_signatures(patient, 2)
    nonces = bytes.fromhex("7ecebe00") + encode(["address"], [patient.address])  # nonces(address)
    then, now = (int.from_bytes(exchange.chain.call_raw_many(exchange.consent.address, [nonces], block=at)[0], "big")
                 for at in (before, "latest"))
    assert (then, now) == (0, 2)
    with pytest.raises(TransactionFailed):
        exchange.chain.call_raw_many(exchange.consent.address, [nonces, b"\xde\xad\xbe\xef"])
