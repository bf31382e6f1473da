"""Sealed cohort proofs, from an attacker's side: hospitals publish envelopes checked against the chain; anyone
may look tags up without signing in, only the patient opens theirs, and the database never names the patient."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from sqlalchemy import MetaData, select

from contracts.datause import Kind, Purpose
from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from contracts.sealing import MIN_BUCKET, OVERHEAD, open_envelope, public_key_of, sealed_tag
from contracts.studies import StudyRequest
from node.kept_cohort import KeptCohort, KeptMember
from node.sealed_publish import Sealer
from tests.chain_steps import contribute
from tests.conftest import Actors
from tests.coordinator.conftest import Harness

SINOGRAM = int(Kind.CT_SINOGRAM)


@pytest.fixture
def sealed(service_factory: Callable[..., Harness]) -> Harness:
    """The service in sealed proof mode."""
    return service_factory(proof_mode="sealed")


def _record(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _study(service: Harness, actors: Actors, rounds: int = 2) -> int:
    studies = service.exchange.studies
    study_id, _ = studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address, actors.hospital2.address),
        task_code_hash=keccak(text="task"), rounds=rounds))
    for hospital in (actors.hospital, actors.hospital2):
        studies.approve(hospital, study_id)
    studies.start(actors.coordinator, study_id)
    return study_id


def _kept(service: Harness, hospital: LocalAccount, study_id: int, round_: int,
          patients: list[LocalAccount]) -> KeptCohort:
    """Anchor a cohort of two records per patient at ``hospital`` and return it as the node keeps it."""
    members = tuple(KeptMember(_record(f"{p.address} {n}"), SINOGRAM, p.address) for p in patients for n in (1, 2))
    tree = MerkleTree(cohort_leaf(m.record_id, m.kind, m.patient) for m in members)
    tx = contribute(service.exchange, hospital, study_id, round_, tree.root, len(members),
                                             keccak(text=f"update {round_}"))
    return KeptCohort(study_id, round_, tx.block_number, "0x" + tree.root.hex(), len(members), members)


def _sealer(service: Harness, hospital: LocalAccount, patients: list[LocalAccount]) -> Sealer:
    exchange = service.exchange
    return Sealer(bytes(hospital.key), exchange.chain.chain_id, exchange.studies.address,
                  {p.address: public_key_of(p.key) for p in patients})


def _body(sealer: Sealer, kept: KeptCohort, *, complete: bool = True, **changes: Any) -> dict[str, Any]:
    return {"study_id": kept.study_id, "round": kept.round, "cohort_root": kept.root, "cohort_count": kept.count,
            "hospital_public_key": sealer.hospital_public_key, "items": sealer.items(kept), "complete": complete,
            **changes}


def _tag(service: Harness, patient: LocalAccount, hospital: LocalAccount, study_id: int, round_: int) -> bytes:
    return sealed_tag(bytes(patient.key), public_key_of(hospital.key), chain_id=service.exchange.chain.chain_id,
                      study_registry=service.exchange.studies.address, study_id=study_id, round_=round_)


def _lookup(service: Harness, *tags: bytes) -> list[dict[str, str]]:
    anonymous = service.new_client()  # no cookie, no token
    answer = anonymous.post("/v1/sealed-proofs/lookup", json={"tags": ["0x" + t.hex() for t in tags]})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, str]] = answer.json()["found"]
    return found


def test_a_patient_finds_opens_and_checks_on_chain_their_sealed_proofs_without_signing_in(
        sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    patients = list(actors.patients[:3])
    kept = _kept(sealed, actors.hospital, study_id, 1, patients)
    sealer = _sealer(sealed, actors.hospital, patients)
    published = sealed.client.post("/v1/sealed-proofs", json=_body(sealer, kept),
                                   headers=sealed.bearer(actors.hospital))
    assert published.status_code == 201, published.text
    assert published.json()["published"] == 3  # one envelope per patient, not per record
    (listed,) = sealed.new_client().get("/v1/sealed-proofs/rounds").json()["rounds"]
    assert (listed["study_id"], listed["round"], listed["hospital"], listed["complete"]) == (
        study_id, 1, actors.hospital.address, True)
    patient = patients[1]
    tag = sealed_tag(bytes(patient.key), bytes.fromhex(listed["hospital_public_key"][2:]),
                     chain_id=sealed.exchange.chain.chain_id, study_registry=sealed.exchange.studies.address,
                     study_id=study_id, round_=1)
    (found,) = _lookup(sealed, tag)
    content = open_envelope(bytes(patient.key), tag, base64.b64decode(found["ciphertext"]))
    assert {r.record_id for r in content.records} == {m.record_id for m in kept.members if m.patient == patient.address}
    for record in content.records:
        leaf = cohort_leaf(record.record_id, record.kind, patient.address)
        assert sealed.exchange.studies.in_cohort(study_id, 1, actors.hospital.address, leaf,
                                                 [bytes.fromhex(p[2:]) for p in record.proof])


def test_a_tag_of_one_round_finds_nothing_of_another(sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    patient = actors.patients[0]
    kept = _kept(sealed, actors.hospital, study_id, 1, [patient])
    sealer = _sealer(sealed, actors.hospital, [patient])
    sealed.client.post("/v1/sealed-proofs", json=_body(sealer, kept), headers=sealed.bearer(actors.hospital))
    assert len(_lookup(sealed, _tag(sealed, patient, actors.hospital, study_id, 1))) == 1
    assert _lookup(sealed, _tag(sealed, patient, actors.hospital, study_id, 2)) == []
    assert _lookup(sealed, _tag(sealed, patient, actors.hospital2, study_id, 1)) == []


def test_a_hospital_cannot_publish_for_another_hospitals_round(sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    patients = list(actors.patients[:2])
    kept = _kept(sealed, actors.hospital, study_id, 1, patients)
    forger = _sealer(sealed, actors.hospital2, patients)
    refused = sealed.client.post("/v1/sealed-proofs", json=_body(forger, kept), headers=sealed.bearer(actors.hospital2))
    assert refused.status_code == 409
    assert f"hospital {actors.hospital2.address} has no contribution to round 1" in refused.json()["detail"]
    assert _lookup(sealed, _tag(sealed, patients[0], actors.hospital2, study_id, 1)) == []


def test_a_public_key_not_the_signed_in_hospitals_is_refused(sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    patients = list(actors.patients[:2])
    kept = _kept(sealed, actors.hospital, study_id, 1, patients)
    other = _sealer(sealed, actors.hospital2, patients)
    body = _body(_sealer(sealed, actors.hospital, patients), kept, hospital_public_key=other.hospital_public_key)
    refused = sealed.client.post("/v1/sealed-proofs", json=body, headers=sealed.bearer(actors.hospital))
    assert refused.status_code == 422
    assert f"is the key of {actors.hospital2.address}, not of the signed-in hospital" in refused.json()["detail"]
    assert sealed.new_client().get("/v1/sealed-proofs/rounds").json()["rounds"] == []


def test_more_envelopes_than_the_cohort_has_records_are_refused_and_nothing_stored(
        sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    patient = actors.patients[0]
    kept = _kept(sealed, actors.hospital, study_id, 1, [patient])  # two records
    sealer = _sealer(sealed, actors.hospital, [patient])
    body = _body(sealer, kept)
    real = body["items"][0]
    body["items"] += [{"tag": "0x" + keccak(text=f"decoy {n}").hex(), "ciphertext": real["ciphertext"]}
                      for n in range(2)]
    refused = sealed.client.post("/v1/sealed-proofs", json=body, headers=sealed.bearer(actors.hospital))
    assert refused.status_code == 422
    assert "would hold 3 sealed envelopes, more than its 2 anchored records" in refused.json()["detail"]
    assert _lookup(sealed, bytes.fromhex(real["tag"][2:])) == []


def test_publishing_the_same_round_twice_keeps_the_first_envelopes(sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    patients = list(actors.patients[:2])
    kept = _kept(sealed, actors.hospital, study_id, 1, patients)
    sealer = _sealer(sealed, actors.hospital, patients)
    headers = sealed.bearer(actors.hospital)
    first_body, again_body = _body(sealer, kept), _body(sealer, kept)  # fresh ephemeral keys: other ciphertexts
    first = sealed.client.post("/v1/sealed-proofs", json=first_body, headers=headers).json()
    again = sealed.client.post("/v1/sealed-proofs", json=again_body, headers=headers).json()
    assert first == again == {"study_id": study_id, "round": 1, "hospital": actors.hospital.address,
                              "published": 2, "cohort_count": 4, "complete": True}
    found = _lookup(sealed, *(bytes.fromhex(i["tag"][2:]) for i in first_body["items"]))
    assert sorted(f["ciphertext"] for f in found) == sorted(i["ciphertext"] for i in first_body["items"])


def test_an_envelope_not_padded_to_a_bucket_is_refused(sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    kept = _kept(sealed, actors.hospital, study_id, 1, [actors.patients[0]])
    sealer = _sealer(sealed, actors.hospital, [actors.patients[0]])
    body = _body(sealer, kept)
    envelope = base64.b64decode(body["items"][0]["ciphertext"])
    assert len(envelope) == MIN_BUCKET + OVERHEAD
    body["items"][0]["ciphertext"] = base64.b64encode(envelope[:-100]).decode()
    refused = sealed.client.post("/v1/sealed-proofs", json=body, headers=sealed.bearer(actors.hospital))
    assert refused.status_code == 422
    assert "is not padded to a bucket" in refused.text


def test_only_a_hospital_publishes_sealed_proofs(sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    kept = _kept(sealed, actors.hospital, study_id, 1, [actors.patients[0]])
    body = _body(_sealer(sealed, actors.hospital, [actors.patients[0]]), kept)
    as_patient = sealed.client.post("/v1/sealed-proofs", json=body, headers=sealed.bearer(actors.patients[0]))
    assert as_patient.status_code == 403
    assert sealed.new_client().post("/v1/sealed-proofs", json=body).status_code == 401


def test_a_lookup_of_too_many_tags_is_refused(sealed: Harness) -> None:
    tags = ["0x" + keccak(text=str(n)).hex() for n in range(257)]
    assert sealed.new_client().post("/v1/sealed-proofs/lookup", json={"tags": tags}).status_code == 422


def test_anonymous_lookups_are_limited_per_client(service_factory: Callable[..., Harness]) -> None:
    limited = service_factory(proof_mode="sealed", lookup_rate=3)
    client = limited.new_client()
    tags = {"tags": ["0x" + keccak(text="nobody's").hex()]}
    assert [client.post("/v1/sealed-proofs/lookup", json=tags).status_code for _ in range(3)] == [200] * 3
    refused = client.post("/v1/sealed-proofs/lookup", json=tags)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1


def test_the_database_names_no_patient_of_a_sealed_round(sealed: Harness, actors: Actors) -> None:
    study_id = _study(sealed, actors)
    patients = list(actors.patients[:3])
    kept = _kept(sealed, actors.hospital, study_id, 1, patients)
    sealer = _sealer(sealed, actors.hospital, patients)
    assert sealed.client.post("/v1/sealed-proofs", json=_body(sealer, kept),
                              headers=sealed.bearer(actors.hospital)).status_code == 201
    _lookup(sealed, *(_tag(sealed, p, actors.hospital, study_id, 1) for p in patients))
    # Every value of every table, as text and as bytes, lower-cased.
    engine = sealed.services.db.engine
    tables = MetaData()
    tables.reflect(engine)
    dump = []
    with engine.connect() as connection:
        for table in tables.sorted_tables:
            for row in connection.execute(select(table)):
                dump += [v.hex() if isinstance(v, bytes) else str(v).lower() for v in row]
    text = "\n".join(dump)
    assert kept.root[2:] in text  # the dump holds what was published
    for patient in patients:
        for secret in (patient.address.lower()[2:], public_key_of(patient.key).hex()):
            assert secret not in text
        for member in kept.members:
            assert member.record_id not in text


def test_a_sealed_deployment_refuses_plain_proofs_and_a_plain_one_sealed_ones(
        service_factory: Callable[..., Harness], actors: Actors) -> None:
    sealed, plain = service_factory(proof_mode="sealed"), service_factory()
    study_id = _study(sealed, actors)
    kept = _kept(sealed, actors.hospital, study_id, 1, [actors.patients[0]])
    sealer = _sealer(sealed, actors.hospital, [actors.patients[0]])
    plain_body = {"study_id": study_id, "round": 1, "cohort_root": kept.root, "cohort_count": kept.count,
                  "proofs": [], "complete": False}
    refused = sealed.client.post("/v1/cohort-proofs", json=plain_body, headers=sealed.bearer(actors.hospital))
    assert (refused.status_code, refused.json()["type"]) == (409, "urn:metai:problem:proofs-sealed")
    assert "POST /v1/sealed-proofs" in refused.json()["detail"]
    for method, path, body in (("POST", "/v1/sealed-proofs", _body(sealer, kept)), ("GET", "/v1/sealed-proofs/rounds",
                               None), ("POST", "/v1/sealed-proofs/lookup", {"tags": ["0x" + "00" * 32]})):
        answer = plain.client.request(method, path, json=body, headers=plain.bearer(actors.hospital))
        assert (answer.status_code, answer.json()["type"]) == (409, "urn:metai:problem:proofs-plain"), path


def test_my_data_uses_in_a_sealed_deployment_says_where_the_proofs_are(sealed: Harness, actors: Actors) -> None:
    headers = sealed.bearer(actors.patients[0])
    uses = sealed.client.get("/v1/me/data-uses", headers=headers)
    assert uses.json() == []
    assert uses.headers["X-MeTAI-Proof-Mode"] == "sealed"
    assert uses.headers["Link"] == '</v1/sealed-proofs/rounds>; rel="alternate"'
    receipt = sealed.client.get("/v1/me/receipt", headers=headers).json()
    assert receipt["proof_mode"] == "sealed"
    assert "This deployment seals cohort proofs" in receipt["how_to_verify"][0]
