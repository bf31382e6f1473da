"""Sign-in with Ethereum, sessions, CSRF, rate limits and the service's guard rails, over HTTP."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Callable

from eth_account.messages import encode_defunct

from coordinator.core import siwe
from coordinator.core.db import head_revision
from tests.conftest import Actors
from tests.coordinator.conftest import Harness

PROBLEM = "application/problem+json"


def _challenge(service: Harness, address: str) -> str:
    response = service.client.post("/v1/auth/challenge", json={"address": address})
    assert response.status_code == 201, response.text
    message: str = response.json()["message"]
    return message


def test_a_challenge_is_an_eip4361_message_for_this_service(service: Harness, actors: Actors) -> None:
    message = siwe.parse_message(_challenge(service, actors.patients[0].address))
    assert (message.domain, message.uri, message.chain_id) == ("testserver", "http://testserver",
                                                               service.exchange.chain.chain_id)
    assert message.address == actors.patients[0].address
    assert message.expiration_time is not None
    assert message.expiration_time > message.issued_at


def test_signing_in_opens_a_session_with_the_roles_the_chain_gives(service: Harness, actors: Actors) -> None:
    session = service.sign_in(actors.researcher)
    me = service.client.get("/v1/auth/me", headers={"Authorization": f"Bearer {session['token']}"})
    assert me.status_code == 200
    assert me.json()["address"] == actors.researcher.address
    assert me.json()["roles"] == ["RESEARCHER"]


def test_a_patient_holds_no_role_and_is_still_signed_in(service: Harness, actors: Actors) -> None:
    session = service.sign_in(actors.patients[0])
    assert session["roles"] == []
    assert service.client.get("/v1/auth/me").json()["address"] == actors.patients[0].address  # by cookie


def test_a_sign_in_message_is_good_once(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    message = _challenge(service, patient.address)
    body = {"message": message, "signature": patient.sign_message(encode_defunct(text=message)).signature.hex()}
    assert service.client.post("/v1/auth/sign-in", json=body).status_code == 201
    again = service.client.post("/v1/auth/sign-in", json=body)
    assert again.status_code == 401
    assert again.headers["content-type"] == PROBLEM
    assert again.json()["type"] == "urn:metai:problem:sign-in-replayed"


def test_a_message_with_a_nonce_this_service_never_issued_is_refused(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    issued = siwe.parse_message(_challenge(service, patient.address))
    forged = dataclasses.replace(issued, nonce=siwe.new_nonce()).to_text()
    body = {"message": forged, "signature": patient.sign_message(encode_defunct(text=forged)).signature.hex()}
    response = service.client.post("/v1/auth/sign-in", json=body)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:metai:problem:sign-in-replayed"


def test_an_expired_message_is_refused(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    issued = siwe.parse_message(_challenge(service, patient.address))
    past = _dt.datetime.now(_dt.UTC).replace(microsecond=0) - _dt.timedelta(minutes=10)
    expired = dataclasses.replace(issued, issued_at=past - _dt.timedelta(minutes=5), expiration_time=past).to_text()
    body = {"message": expired, "signature": patient.sign_message(encode_defunct(text=expired)).signature.hex()}
    response = service.client.post("/v1/auth/sign-in", json=body)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:metai:problem:sign-in-expired"


def test_a_message_for_another_domain_is_refused(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    issued = siwe.parse_message(_challenge(service, patient.address))
    foreign = dataclasses.replace(issued, domain="evil.example").to_text()
    body = {"message": foreign, "signature": patient.sign_message(encode_defunct(text=foreign)).signature.hex()}
    response = service.client.post("/v1/auth/sign-in", json=body)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:metai:problem:sign-in-domain-mismatch"
    assert "evil.example" in response.json()["detail"]


def test_a_signature_by_another_key_is_refused(service: Harness, actors: Actors) -> None:
    message = _challenge(service, actors.patients[0].address)
    body = {"message": message,
            "signature": actors.patients[1].sign_message(encode_defunct(text=message)).signature.hex()}
    response = service.client.post("/v1/auth/sign-in", json=body)
    assert response.status_code == 401
    assert response.json()["type"] == "urn:metai:problem:sign-in-signature-mismatch"


def test_a_request_without_a_session_is_refused(service: Harness) -> None:
    response = service.new_client().get("/v1/auth/me")
    assert response.status_code == 401
    assert response.json()["type"] == "urn:metai:problem:not-signed-in"
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_cookie_session_must_send_its_csrf_token_to_change_anything(service: Harness, actors: Actors) -> None:
    session = service.sign_in(actors.patients[0])
    refused = service.client.post("/v1/auth/sign-out")
    assert refused.status_code == 403
    assert refused.json()["type"] == "urn:metai:problem:csrf"
    wrong = service.client.post("/v1/auth/sign-out", headers={"X-CSRF-Token": "not-the-token"})
    assert wrong.status_code == 403
    done = service.client.post("/v1/auth/sign-out", headers={"X-CSRF-Token": session["csrf_token"]})
    assert done.status_code == 204


def test_a_bearer_session_needs_no_csrf_token(service: Harness, actors: Actors) -> None:
    headers = service.bearer(actors.patients[0])
    assert service.new_client().post("/v1/auth/sign-out", headers=headers).status_code == 204


def test_signing_out_ends_the_session(service: Harness, actors: Actors) -> None:
    headers = service.bearer(actors.patients[0])
    client = service.new_client()
    assert client.post("/v1/auth/sign-out", headers=headers).status_code == 204
    after = client.get("/v1/auth/me", headers=headers)
    assert after.status_code == 401
    assert after.json()["type"] == "urn:metai:problem:session-expired"


def test_sign_in_is_rate_limited(service_factory: Callable[..., Harness], actors: Actors) -> None:
    service = service_factory(sign_in_rate=3)
    codes = [service.client.post("/v1/auth/challenge", json={"address": actors.patients[0].address}).status_code
             for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    limited = service.client.post("/v1/auth/challenge", json={"address": actors.patients[0].address})
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["type"] == "urn:metai:problem:rate-limited"


def test_a_body_over_the_limit_is_refused_unread(service_factory: Callable[..., Harness]) -> None:
    service = service_factory(max_body=2048)
    response = service.client.post("/v1/auth/challenge", content=b"{" + b" " * 4096 + b"}",
                                   headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert response.json()["type"] == "urn:metai:problem:request-too-large"


def test_every_response_carries_the_security_headers(service: Harness) -> None:
    response = service.client.get("/v1/health")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert f"connect-src 'self' {service.exchange.chain.rpc_url.rstrip('/')}" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_an_invalid_request_is_a_problem_naming_the_field(service: Harness) -> None:
    response = service.client.post("/v1/auth/challenge", json={"address": "0x1234"})
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
    assert "address" in response.json()["detail"]


def test_an_unknown_path_is_a_problem(service: Harness) -> None:
    response = service.client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["type"] == "urn:metai:problem:not-found"


def test_health_reports_chain_database_and_outbox(service: Harness) -> None:
    report = service.client.get("/v1/health").json()
    assert report["status"] == "ok"
    assert report["chain_id"] == service.exchange.chain.chain_id
    assert report["block"] == service.exchange.chain.block_number
    assert report["database"] in ("sqlite", "postgresql")
    assert report["database_reachable"]
    assert report["outbox_depth"] == 0
    assert report["schema_revision"] == head_revision()
