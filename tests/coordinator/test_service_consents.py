"""Patients' consents through the API: typed data to sign, the relay's outbox, batches, cancellation."""

from __future__ import annotations

import time
from typing import Any

from eth_account.signers.local import LocalAccount

from contracts.datause import Kind, Purpose, Scope, Use
from contracts.events import ConsentGranted, read_events
from tests.conftest import Actors
from tests.coordinator.conftest import Harness, sign_typed

GRANT = {"action": "grant", "scope": {"purpose": "HMB"}, "kinds": ["ct-sinogram", "image"]}
HMB = Scope(purpose=Purpose.HMB)


def _typed(service: Harness, headers: dict[str, str], body: dict[str, Any] = GRANT) -> dict[str, Any]:
    response = service.client.post("/v1/consents/typed-data", json=body, headers=headers)
    assert response.status_code == 200, response.text
    typed: dict[str, Any] = response.json()["typed_data"]
    return typed


def _submit(service: Harness, patient: LocalAccount, headers: dict[str, str],
            body: dict[str, Any] = GRANT) -> dict[str, Any]:
    typed = _typed(service, headers, body)
    response = service.client.post("/v1/consents/signed", headers=headers,
                                   json={"typed_data": typed, "signature": sign_typed(patient, typed)})
    assert response.status_code == 202, response.text
    item: dict[str, Any] = response.json()
    return item


def _item(service: Harness, headers: dict[str, str], item_id: str) -> dict[str, Any]:
    response = service.client.get(f"/v1/consents/relay/{item_id}", headers=headers)
    assert response.status_code == 200, response.text
    item: dict[str, Any] = response.json()
    return item


def test_the_typed_data_is_what_eth_sign_typed_data_v4_takes(service: Harness, actors: Actors) -> None:
    typed = _typed(service, service.bearer(actors.patients[0]))
    assert set(typed) == {"types", "primaryType", "domain", "message"}
    assert typed["primaryType"] == "ConsentGrant"
    assert typed["domain"] == {"name": "MeTAI ConsentRegistry", "version": "1",
                               "chainId": service.exchange.chain.chain_id,
                               "verifyingContract": service.exchange.consent.address}
    assert typed["message"]["patient"] == actors.patients[0].address
    assert typed["message"]["kinds"] == int(Kind.CT_SINOGRAM | Kind.IMAGE)


def test_a_signed_grant_is_relayed_and_mined(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    headers = service.bearer(patient)
    item = _submit(service, patient, headers)
    assert item["state"] == "pending"
    assert service.services.relay.step() == 1
    mined = _item(service, headers, item["id"])
    assert mined["state"] == "mined"
    assert mined["event"] == "ConsentGranted"
    assert mined["consent_id"] == "0x" + service.exchange.consent.consent_id(patient.address, HMB).hex()
    receipt = service.exchange.chain.receipt(mined["tx_hash"])
    assert receipt is not None
    assert receipt.block_number == mined["block"]
    assert service.exchange.consent.permits(patient.address, Use(actors.hospital.address, Kind.IMAGE, Purpose.HMB))


def test_submitting_the_same_signature_twice_is_one_item(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    headers = service.bearer(patient)
    typed = _typed(service, headers)
    body = {"typed_data": typed, "signature": sign_typed(patient, typed)}
    first = service.client.post("/v1/consents/signed", json=body, headers=headers).json()
    second = service.client.post("/v1/consents/signed", json=body, headers=headers).json()
    assert first["id"] == second["id"]


def test_a_patient_cannot_relay_another_patients_signature(service: Harness, actors: Actors) -> None:
    owner, other = actors.patients[0], actors.patients[1]
    typed = _typed(service, service.bearer(owner))
    response = service.client.post("/v1/consents/signed", headers=service.bearer(other),
                                   json={"typed_data": typed, "signature": sign_typed(owner, typed)})
    assert response.status_code == 403
    assert response.json()["type"] == "urn:metai:problem:not-your-consent"


def test_a_signature_by_someone_else_than_the_named_patient_is_refused(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    headers = service.bearer(patient)
    typed = _typed(service, headers)
    response = service.client.post("/v1/consents/signed", headers=headers,
                                   json={"typed_data": typed, "signature": sign_typed(actors.patients[1], typed)})
    assert response.status_code == 403
    assert response.json()["type"] == "urn:metai:problem:signer-mismatch"


def test_typed_data_for_another_chain_is_refused(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    headers = service.bearer(patient)
    typed = _typed(service, headers)
    typed["domain"]["chainId"] = 1
    response = service.client.post("/v1/consents/signed", headers=headers,
                                   json={"typed_data": typed, "signature": sign_typed(patient, typed)})
    assert response.status_code == 422
    assert response.json()["type"] == "urn:metai:problem:typed-data-mismatch"


def test_another_patients_relay_item_is_not_found(service: Harness, actors: Actors) -> None:
    item = _submit(service, actors.patients[0], service.bearer(actors.patients[0]))
    response = service.client.get(f"/v1/consents/relay/{item['id']}", headers=service.bearer(actors.patients[1]))
    assert response.status_code == 404
    listed = service.client.get("/v1/consents/relay", headers=service.bearer(actors.patients[1]))
    assert listed.json() == []


def test_consents_of_many_patients_go_in_one_transaction(service: Harness, actors: Actors) -> None:
    items = []
    for patient in actors.patients:
        headers = service.bearer(patient)
        items.append((headers, _submit(service, patient, headers)))
    assert service.services.relay.step() == len(actors.patients)
    settled = [_item(service, headers, item["id"]) for headers, item in items]
    assert {i["state"] for i in settled} == {"mined"}
    assert len({i["tx_hash"] for i in settled}) == 1


def test_one_bad_consent_does_not_hold_up_the_batch(service: Harness, actors: Actors) -> None:
    good, bad = actors.patients[0], actors.patients[1]
    good_headers, bad_headers = service.bearer(good), service.bearer(bad)
    lapsed = {**GRANT, "expires_at": int(time.time()) - 3600}  # the chain refuses an expiry in the past
    ok_item = _submit(service, good, good_headers)
    bad_item = _submit(service, bad, bad_headers, lapsed)
    service.services.relay.step()
    assert _item(service, good_headers, ok_item["id"])["state"] == "mined"
    refused = _item(service, bad_headers, bad_item["id"])
    assert refused["state"] == "failed"
    assert refused["error"] == "ConsentRegistryExpiryInPast"
    assert refused["tx_hash"] == _item(service, good_headers, ok_item["id"])["tx_hash"]


def test_a_direct_revocation_voids_a_grant_signed_before_it(service: Harness, actors: Actors) -> None:
    """The audit's finding: a signed grant not yet relayed must not outlive the patient's revocation."""
    patient = actors.patients[0]
    consent = service.exchange.consent
    consent.grant(patient, HMB, Kind.IMAGE, 2**64 - 1)
    headers = service.bearer(patient)
    item = _submit(service, patient, headers)  # signed, waiting in the outbox
    consent.revoke(patient, HMB)  # from the patient's own address
    service.services.relay.step()
    settled = _item(service, headers, item["id"])
    assert settled["state"] == "failed"
    assert settled["error"] == "InvalidAccountNonce"
    assert not consent.permits(patient.address, Use(actors.hospital.address, Kind.IMAGE, Purpose.HMB))


def test_cancelling_voids_every_outstanding_signature(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    headers = service.bearer(patient)
    first = _submit(service, patient, headers)
    second = _submit(service, patient, headers, {**GRANT, "scope": {"purpose": "GRU"}})
    assert (first["nonce"], second["nonce"]) == (0, 1)
    cancel = service.client.post("/v1/consents/cancel", headers=headers).json()
    assert cancel["up_to"] == 2
    assert set(cancel["outstanding"]) == {first["id"], second["id"]}
    service.exchange.chain.transact(patient, service.exchange.consent.contract.functions.cancelSignatures(2))
    service.services.relay.step()
    for item in (first, second):
        settled = _item(service, headers, item["id"])
        assert (settled["state"], settled["error"]) == ("failed", "InvalidAccountNonce")
    assert not service.exchange.consent.consent_of(patient.address, HMB).exists


def test_my_consents_say_in_words_what_each_allows_and_its_state(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    consent = service.exchange.consent
    consent.grant(patient, Scope(hospital=actors.hospital.address, purpose=Purpose.DS, disease=7), Kind.CT_SINOGRAM,
                  2**64 - 1)
    consent.grant(patient, HMB, Kind.IMAGE, 2**64 - 1)
    consent.revoke(patient, HMB)
    listed = service.client.get("/v1/consents", headers=service.bearer(patient)).json()
    by_purpose = {c["scope"]["purpose"]: c for c in listed}
    assert by_purpose["DS"]["state"] == "in force"
    assert by_purpose["DS"]["kinds"] == ["ct-sinogram"]
    assert "research on one disease only (disease code 7)" in by_purpose["DS"]["words"]
    assert actors.hospital.address in by_purpose["DS"]["words"]
    assert by_purpose["HMB"]["state"] == "revoked"
    assert by_purpose["HMB"]["revoked_at_block"] is not None
    other = service.client.get("/v1/consents", headers=service.bearer(actors.patients[1])).json()
    assert other == []


def test_a_used_nonce_is_refused_at_once(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    headers = service.bearer(patient)
    typed = _typed(service, headers)
    service.exchange.consent.grant(patient, HMB, Kind.IMAGE, 2**64 - 1)
    service.exchange.consent.revoke(patient, HMB)  # consumes nonce 0
    response = service.client.post("/v1/consents/signed", headers=headers,
                                   json={"typed_data": typed, "signature": sign_typed(patient, typed)})
    assert response.status_code == 409
    assert response.json()["type"] == "urn:metai:problem:nonce-used"


def test_each_consent_is_mined_once(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    headers = service.bearer(patient)
    _submit(service, patient, headers)
    service.services.relay.step()
    service.services.relay.recover()
    service.services.relay.step()
    granted = [e for e in read_events(service.exchange.chain, [service.exchange.consent.address],
                                      from_block=service.exchange.deployment.deploy_block)
               if isinstance(e, ConsentGranted) and e.patient == patient.address]
    assert len(granted) == 1
