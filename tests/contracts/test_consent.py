"""ConsentRegistry against a real Anvil: grants, revocations, signatures and permissions."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts import eip712
from contracts.consent import ConsentRecord
from contracts.datause import ANY_HOSPITAL, NO_EXPIRY, Kind, Purpose, Scope, Use
from contracts.events import ConsentGranted, ConsentRevoked
from contracts.exchange import Exchange
from deploy.anvil import advance_time

HMB = Scope(purpose=Purpose.HMB)


def use_by(hospital: str, *, kinds: Kind = Kind.CT_SINOGRAM, purpose: Purpose = Purpose.HMB,
           disease: int = 0, study: int = 0) -> Use:
    return Use(hospital=hospital, kinds=kinds, purpose=purpose, disease=disease, study_id=study)


# ---------------------------------------------------------------- happy paths with events


def test_direct_grant_emits_event_with_scope(exchange: Exchange, actors, now) -> None:
    patient = actors.patients[0]
    scope = Scope(hospital=actors.hospital.address, purpose=Purpose.DS, disease=42, study_id=7)
    tx = exchange.consent.grant(patient, scope, Kind.CT_SINOGRAM | Kind.MR_KSPACE, now + 1000)
    event = tx.event(ConsentGranted)
    assert (event.patient, event.hospital, event.purpose, event.disease, event.study_id) == (
        patient.address, actors.hospital.address, Purpose.DS, 42, 7)
    assert event.kinds == Kind.CT_SINOGRAM | Kind.MR_KSPACE
    assert event.expires_at == now + 1000
    assert event.consent_id == exchange.consent.consent_id(patient.address, scope)


def test_relayed_grant_is_attributed_to_the_patient_not_the_relayer(exchange: Exchange, actors) -> None:
    patient = Account.create()  # holds no ether: relaying costs the patient nothing
    signed = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    tx = exchange.consent.relay(actors.coordinator, signed)
    assert tx.event(ConsentGranted).patient == patient.address
    assert exchange.consent.nonce(patient.address) == 1
    assert exchange.consent.consent_of(patient.address, HMB).granted_at_block == tx.block_number


def test_direct_revoke_emits_event_and_records_block(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    tx = exchange.consent.revoke(patient, HMB)
    event = tx.event(ConsentRevoked)
    assert (event.patient, event.consent_id) == (patient.address, exchange.consent.consent_id(patient.address, HMB))
    assert exchange.consent.consent_of(patient.address, HMB).revoked_at_block == tx.block_number


def test_relayed_revoke_emits_event(exchange: Exchange, actors) -> None:
    patient = Account.create()
    exchange.consent.relay(actors.coordinator, exchange.consent.sign_grant(patient, HMB, Kind.IMAGE, NO_EXPIRY))
    tx = exchange.consent.relay(actors.coordinator, exchange.consent.sign_revoke(patient, HMB))
    assert tx.event(ConsentRevoked).patient == patient.address
    assert exchange.consent.nonce(patient.address) == 2


def test_regrant_after_revoke_restores_permission(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    use = use_by(actors.hospital.address)
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    exchange.consent.revoke(patient, HMB)
    assert not exchange.consent.permits(patient.address, use)
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    assert exchange.consent.permits(patient.address, use)


# ---------------------------------------------------------------- refusals


def test_signature_by_someone_else_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    patient, impostor = Account.create(), Account.create()
    registry, chain_id = exchange.consent.address, exchange.chain.chain_id
    typed = eip712.grant_typed_data(chain_id, registry, patient.address, HMB, Kind.CT_SINOGRAM, NO_EXPIRY, 0, 2**40)
    sig = impostor.sign_message(encode_typed_data(full_message=typed))
    forged = eip712.SignedConsent(patient.address, HMB, 0, 2**40, sig.v, sig.r.to_bytes(32, "big"),
                                  sig.s.to_bytes(32, "big"), Kind.CT_SINOGRAM, NO_EXPIRY)
    with expect_revert("ConsentRegistryInvalidSigner", signer=impostor.address, patient=patient.address):
        exchange.consent.relay(actors.coordinator, forged)


def test_signature_over_other_terms_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    patient = Account.create()
    signed = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    widened = dataclasses.replace(signed, kinds=Kind.CT_SINOGRAM | Kind.IMAGE)
    with expect_revert("ConsentRegistryInvalidSigner", patient=patient.address):
        exchange.consent.relay(actors.coordinator, widened)


def test_malformed_signature_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    patient = Account.create()
    signed = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    high_s = (2**256 - 1).to_bytes(32, "big")  # above secp256k1n/2: malleable, rejected
    with expect_revert("ConsentRegistryInvalidSignature", patient=patient.address):
        exchange.consent.relay(actors.coordinator, dataclasses.replace(signed, s=high_s))


def test_replayed_signature_is_refused_by_nonce(exchange: Exchange, actors, expect_revert) -> None:
    patient = Account.create()
    signed = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    exchange.consent.relay(actors.coordinator, signed)
    with expect_revert("InvalidAccountNonce", account=patient.address, currentNonce=1):
        exchange.consent.relay(actors.coordinator, signed)


def test_expired_deadline_is_refused(exchange: Exchange, actors, expect_revert, now) -> None:
    patient = Account.create()
    signed = exchange.consent.sign_grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY, deadline=now - 1)
    with expect_revert("ConsentRegistryExpiredSignature", deadline=now - 1):
        exchange.consent.relay(actors.coordinator, signed)


def test_grant_expiring_in_the_past_is_refused(exchange: Exchange, actors, expect_revert, now) -> None:
    with expect_revert("ConsentRegistryExpiryInPast", expiresAt=now - 10):
        exchange.consent.grant(actors.patients[0], HMB, Kind.CT_SINOGRAM, now - 10)


def test_invalid_kinds_are_refused(exchange: Exchange, actors, expect_revert) -> None:
    with expect_revert("ConsentRegistryInvalidKinds", kinds=16):
        exchange.consent.grant(actors.patients[0], HMB, Kind(0) | 16, NO_EXPIRY)  # type: ignore[operator]


def test_revoking_a_revoked_consent_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    first = exchange.consent.revoke(patient, HMB)
    with expect_revert("ConsentRegistryConsentRevoked", patient=patient.address, revokedAtBlock=first.block_number):
        exchange.consent.revoke(patient, HMB)


def test_revoking_a_consent_never_granted_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    with expect_revert("ConsentRegistryNotGranted", patient=patient.address,
                 consentId=exchange.consent.consent_id(patient.address, HMB)):
        exchange.consent.revoke(patient, HMB)


def test_expired_consent_is_refused_with_its_expiry(exchange: Exchange, actors, expect_revert, now, anvil) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, now + 100)
    use = use_by(actors.hospital.address)
    exchange.consent.explain(patient.address, use)  # in force: returns
    advance_time(anvil.rpc_url, 200)
    with expect_revert("ConsentRegistryConsentExpired", patient=patient.address, expiresAt=now + 100):
        exchange.consent.explain(patient.address, use)


def test_revoked_consent_is_refused_with_its_block(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    tx = exchange.consent.revoke(patient, HMB)
    with expect_revert("ConsentRegistryConsentRevoked", patient=patient.address, revokedAtBlock=tx.block_number):
        exchange.consent.explain(patient.address, use_by(actors.hospital.address))


def test_explain_answers_as_of_the_block_asked(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    granted = exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    revoked = exchange.consent.revoke(patient, HMB)
    use = use_by(actors.hospital.address)
    exchange.consent.explain(patient.address, use, block=granted.block_number)  # in force then: returns
    with expect_revert("ConsentRegistryConsentRevoked", patient=patient.address, revokedAtBlock=revoked.block_number):
        exchange.consent.explain(patient.address, use, block=revoked.block_number)


def test_uncovered_kind_is_refused(exchange: Exchange, actors, expect_revert) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.IMAGE, NO_EXPIRY)
    with expect_revert("ConsentRegistryKindsNotCovered", granted=int(Kind.IMAGE), requested=int(Kind.CT_SINOGRAM)):
        exchange.consent.explain(patient.address, use_by(actors.hospital.address))


# ---------------------------------------------------------------- semantics


def test_grant_for_one_purpose_does_not_permit_another(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, Scope(purpose=Purpose.DS, disease=1), Kind.CT_SINOGRAM, NO_EXPIRY)
    h = actors.hospital.address
    assert exchange.consent.permits(patient.address, use_by(h, purpose=Purpose.DS, disease=1))
    assert not exchange.consent.permits(patient.address, use_by(h, purpose=Purpose.DS, disease=2))
    assert not exchange.consent.permits(patient.address, use_by(h, purpose=Purpose.HMB))
    assert not exchange.consent.permits(patient.address, use_by(h, purpose=Purpose.GRU))


def test_broader_purpose_covers_narrower_per_duo(exchange: Exchange, actors) -> None:
    gru, hmb = actors.patients[0], actors.patients[1]
    exchange.consent.grant(gru, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY)
    exchange.consent.grant(hmb, Scope(purpose=Purpose.HMB), Kind.CT_SINOGRAM, NO_EXPIRY)
    h = actors.hospital.address
    for purpose, disease in ((Purpose.GRU, 0), (Purpose.HMB, 0), (Purpose.DS, 9)):
        assert exchange.consent.permits(gru.address, use_by(h, purpose=purpose, disease=disease))
    assert exchange.consent.permits(hmb.address, use_by(h, purpose=Purpose.DS, disease=9))
    assert not exchange.consent.permits(hmb.address, use_by(h, purpose=Purpose.GRU))


def test_study_specific_grant_does_not_permit_another_study(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, Scope(purpose=Purpose.HMB, study_id=5), Kind.CT_SINOGRAM, NO_EXPIRY)
    h = actors.hospital.address
    assert exchange.consent.permits(patient.address, use_by(h, study=5))
    assert not exchange.consent.permits(patient.address, use_by(h, study=6))


def test_any_study_grant_permits_every_study_with_that_purpose(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    h = actors.hospital.address
    assert all(exchange.consent.permits(patient.address, use_by(h, study=s)) for s in (1, 2, 99))


def test_hospital_specific_grant_does_not_permit_another_hospital(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, Scope(hospital=actors.hospital.address, purpose=Purpose.HMB),
                           Kind.CT_SINOGRAM, NO_EXPIRY)
    assert exchange.consent.permits(patient.address, use_by(actors.hospital.address))
    assert not exchange.consent.permits(patient.address, use_by(actors.hospital2.address))


def test_expiry_is_respected(exchange: Exchange, actors, now, anvil) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, now + 60)
    use = use_by(actors.hospital.address)
    assert exchange.consent.permits(patient.address, use)
    advance_time(anvil.rpc_url, 120)
    assert not exchange.consent.permits(patient.address, use)


def test_revoke_takes_effect_from_the_block_it_is_mined_in(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    use = use_by(actors.hospital.address)
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    tx = exchange.consent.revoke(patient, HMB)
    assert exchange.consent.permits(patient.address, use, block=tx.block_number - 1)
    assert not exchange.consent.permits(patient.address, use, block=tx.block_number)
    assert exchange.consent.permits_batch([patient.address], use, block=tx.block_number - 1) == [True]
    assert exchange.consent.permits_batch([patient.address], use, block=tx.block_number) == [False]


def test_all_requested_kinds_must_be_covered(exchange: Exchange, actors) -> None:
    patient = actors.patients[0]
    exchange.consent.grant(patient, HMB, Kind.CT_SINOGRAM, NO_EXPIRY)
    h = actors.hospital.address
    assert not exchange.consent.permits(patient.address, use_by(h, kinds=Kind.CT_SINOGRAM | Kind.IMAGE))


# ---------------------------------------------------------------- batch view = per-patient view

_scopes = st.builds(
    Scope,
    hospital=st.sampled_from(["H1", "H2", ANY_HOSPITAL]),
    purpose=st.sampled_from([Purpose.GRU, Purpose.HMB]),
    study_id=st.sampled_from([0, 1, 2]),
) | st.builds(
    Scope,
    hospital=st.sampled_from(["H1", "H2", ANY_HOSPITAL]),
    purpose=st.just(Purpose.DS),
    disease=st.sampled_from([1, 2]),
    study_id=st.sampled_from([0, 1, 2]),
)
_grants = st.lists(
    st.tuples(
        st.integers(0, 5),  # patient index
        _scopes,
        st.sampled_from([Kind.CT_SINOGRAM, Kind.IMAGE, Kind.CT_SINOGRAM | Kind.MR_KSPACE]),
        st.booleans(),  # revoke afterwards
    ),
    max_size=8,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(grants=_grants, query=_scopes, kinds=st.sampled_from([Kind.CT_SINOGRAM, Kind.IMAGE]))
def test_batch_view_equals_per_patient_answers(exchange: Exchange, actors, grants, query, kinds) -> None:
    hospitals = {"H1": actors.hospital.address, "H2": actors.hospital2.address, ANY_HOSPITAL: ANY_HOSPITAL}
    patients = [Account.create() for _ in range(6)]
    for index, scope, granted_kinds, revoke in grants:
        scope = dataclasses.replace(scope, hospital=hospitals[scope.hospital])
        patient = patients[index]
        exchange.consent.relay(actors.coordinator,
                               exchange.consent.sign_grant(patient, scope, granted_kinds, NO_EXPIRY))
        if revoke:
            exchange.consent.relay(actors.coordinator, exchange.consent.sign_revoke(patient, scope))
    use = Use(hospital=hospitals[query.hospital] if query.hospital != ANY_HOSPITAL else actors.hospital.address,
              kinds=kinds, purpose=query.purpose, disease=query.disease, study_id=query.study_id)
    addresses = [p.address for p in patients]
    block = exchange.chain.block_number
    batch = exchange.consent.permits_batch(addresses, use, block=block, chunk=4)
    single = [exchange.consent.permits(a, use, block=block) for a in addresses]
    assert batch == single


# ---------------------------------------------------------------- the client's views and signing defaults


def test_the_stored_consent_is_read_whole_and_as_of_the_block_asked(exchange: Exchange, actors, now) -> None:
    patient = actors.patients[0]
    kinds = Kind.CT_SINOGRAM | Kind.MR_KSPACE
    granted = exchange.consent.grant(patient, HMB, kinds, now + 86_400).block_number
    revoked = exchange.consent.revoke(patient, HMB).block_number
    then = exchange.consent.consent_of(patient.address, HMB, block=granted)
    assert then == ConsentRecord(kinds, now + 86_400, granted, 0)
    assert type(then.kinds) is Kind
    assert type(then.expires_at) is int
    assert exchange.consent.consent_of(patient.address, HMB) == ConsentRecord(kinds, now + 86_400, granted, revoked)


def test_a_nonce_given_is_signed_as_given_and_the_deadline_defaults_to_an_hour(exchange: Exchange, actors,
                                                                              monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import contracts.consent

    patient = Account.create()
    monkeypatch.setattr(contracts.consent.time, "time", lambda: 1_900_000_000.75)
    grant = exchange.consent.sign_grant(patient, HMB, Kind.IMAGE, NO_EXPIRY, nonce=7)
    revoke = exchange.consent.sign_revoke(patient, HMB, nonce=8)
    assert (grant.nonce, revoke.nonce) == (7, 8)  # not the chain's next nonce, 0
    assert (grant.deadline, revoke.deadline) == (1_900_003_600, 1_900_003_600)
    given = exchange.consent.sign_revoke(patient, HMB, deadline=1_900_000_005)
    assert (given.nonce, given.deadline) == (0, 1_900_000_005)


def test_a_signed_consent_with_kinds_but_no_expiry_or_the_reverse_cannot_be_made(exchange: Exchange) -> None:
    # The relay sends a revocation for a signed consent without kinds and expiry: a half-filled grant
    # must not reach it (it would revoke what the patient meant to grant).
    signed = exchange.consent.sign_grant(Account.create(), HMB, Kind.IMAGE, NO_EXPIRY, nonce=0, deadline=2**40)
    for kinds, expires in ((Kind.IMAGE, None), (None, NO_EXPIRY)):
        with pytest.raises(ValueError, match="a signed grant carries both") as refused:
            dataclasses.replace(signed, kinds=kinds, expires_at=expires)
        assert str(refused.value) == (
            "a signed grant carries both kinds and expires_at and a signed revocation neither; got "
            f"kinds={kinds!r} and expires_at={expires!r}, which the relay could not tell apart")
