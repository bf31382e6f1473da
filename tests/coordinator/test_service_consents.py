"""Patients' consents through the API: typed data to sign, the relay's outbox, batches, cancellation."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from eth_account.signers.local import LocalAccount

from contracts.datause import Kind, Purpose, Scope, Use
from contracts.events import ConsentGranted, read_events
from tests.conftest import Actors
from tests.coordinator.conftest import Harness, LiveService, sign_typed

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


def test_consents_submitted_together_are_each_answered_for_themselves(live_service: LiveService,
                                                                      actors: Actors) -> None:
    """Many patients submit at once: each gets its own item (stored before the answer), a duplicate gets the
    same item, and a used nonce is refused without holding up the others stored with it."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx
    from eth_account import Account

    harness = live_service.harness
    patients = [Account.create() for _ in range(12)]  # sign-ins are limited to 30 a minute per client
    bodies = []
    for patient in patients:
        headers = harness.bearer(patient)
        typed = _typed(harness, headers)
        bodies.append((headers, {"typed_data": typed, "signature": sign_typed(patient, typed)}))
    spent = actors.patients[0]
    spent_headers = harness.bearer(spent)
    spent_typed = _typed(harness, spent_headers)
    harness.exchange.consent.cancel_signatures(spent, 1)  # the patient voids nonce 0 before it is relayed
    bodies.append((spent_headers, {"typed_data": spent_typed, "signature": sign_typed(spent, spent_typed)}))
    bodies.append(bodies[0])  # the same signature again, in the same rush

    def submit(body: tuple[dict[str, str], dict[str, Any]]) -> httpx.Response:
        with httpx.Client(base_url=live_service.url, timeout=30) as client:
            return client.post("/v1/consents/signed", headers=body[0], json=body[1])

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(submit, bodies))
    assert [a.status_code for a in answers] == [202] * len(patients) + [409, 202]
    assert answers[-2].json()["type"] == "urn:metai:problem:nonce-used"
    ids = [a.json()["id"] for a in answers[:len(patients)]]
    assert len(set(ids)) == len(patients)
    assert answers[-1].json()["id"] == ids[0]
    for (headers, _), item_id in zip(bodies, ids, strict=False):  # each stored when its answer left
        assert _item(harness, headers, item_id)["state"] == "pending"
    while live_service.services.relay.step():
        pass
    granted = {e.patient for e in read_events(harness.exchange.chain, [harness.exchange.consent.address],
                                              from_block=harness.exchange.deployment.deploy_block)
               if isinstance(e, ConsentGranted)}
    assert {p.address for p in patients} <= granted
    assert spent.address not in granted


def test_consents_arriving_together_are_stored_in_one_transaction(service: Harness, actors: Actors) -> None:
    import asyncio

    from eth_account import Account
    from sqlalchemy import event

    from contracts import eip712
    from coordinator.relay.intake import NonceUsed

    consent = service.exchange.consent
    deadline = int(time.time()) + 3600

    def signed(patient: LocalAccount, nonce: int) -> eip712.SignedConsent:
        typed = eip712.grant_typed_data(consent.chain.chain_id, consent.address, patient.address, HMB,
                                        Kind.IMAGE, 2**64 - 1, nonce, deadline)
        raw = bytes.fromhex(sign_typed(patient, typed)[2:])
        return eip712.SignedConsent(patient.address, HMB, nonce, deadline, raw[64], raw[:32], raw[32:64],
                                    Kind.IMAGE, 2**64 - 1)

    spent = actors.patients[0]
    consent.cancel_signatures(spent, 1)
    group = [signed(Account.create(), 0) for _ in range(10)] + [signed(spent, 0)]
    writes: list[int] = []
    event.listen(service.services.db.engine, "begin", lambda c: writes.append(1)
                 if not c.get_execution_options().get("metai_readonly") else None)

    async def together() -> list[object]:
        return list(await asyncio.gather(*(service.services.intake.take(s) for s in group)))

    outcomes = asyncio.run(together())
    assert outcomes[-1] == NonceUsed(0, 1)
    assert len({o.id for o in outcomes[:-1]}) == 10  # type: ignore[attr-defined]
    assert len(writes) == 1


def test_submissions_past_the_relay_rate_are_refused_with_retry_after(
        service_factory: Callable[..., Harness], actors: Actors) -> None:
    limited = service_factory(relay_rate=1)
    patient = actors.patients[0]
    headers = limited.bearer(patient)
    _submit(limited, patient, headers)
    typed = _typed(limited, headers, {**GRANT, "scope": {"purpose": "GRU"}})
    refused = limited.client.post("/v1/consents/signed", headers=headers,
                                  json={"typed_data": typed, "signature": sign_typed(patient, typed)})
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("at most 1 per minute")
    assert int(refused.headers["Retry-After"]) >= 1


def test_the_relay_waits_while_another_relay_holds_the_outbox(service: Harness, actors: Actors) -> None:
    """A relay left running by a service that was killed holds the outbox's lease; a new one must not
    send the same items beside it, and takes over once it is gone."""
    patient = actors.patients[0]
    headers = service.bearer(patient)
    other_relay = service.services.db.try_lease("consent-relay")
    assert other_relay is not None
    relay = service.services.relay
    relay.start()
    try:
        item = _submit(service, patient, headers)
        relay.notify()
        time.sleep(1.5)
        assert relay.running()
        assert _item(service, headers, item["id"])["state"] == "pending"
        other_relay.release()
        deadline = time.monotonic() + 30
        while _item(service, headers, item["id"])["state"] != "mined" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _item(service, headers, item["id"])["state"] == "mined"
    finally:
        other_relay.release()
        relay.stop()
