"""Who used my data: hospitals publish each round's cohort proofs, checked against the chain; each patient
sees only their own, each proof verifies on chain, and a revoked patient sees later rounds without them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from contracts.datause import Kind, Purpose, Scope
from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree
from contracts.studies import StudyRequest
from tests.chain_steps import contribute
from tests.conftest import Actors
from tests.coordinator.conftest import Harness

SINOGRAM = int(Kind.CT_SINOGRAM)


def _record(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@dataclass(frozen=True)
class Member:
    patient: LocalAccount
    record_id: str

    @property
    def leaf(self) -> bytes:
        return cohort_leaf(self.record_id, SINOGRAM, self.patient.address)


def _study(service: Harness, actors: Actors, rounds: int = 2) -> int:
    studies = service.exchange.studies
    study_id, _ = studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address,),
        task_code_hash=keccak(text="task"), rounds=rounds))
    studies.approve(actors.hospital, study_id)
    studies.start(actors.coordinator, study_id)
    return study_id


def _contribute(service: Harness, actors: Actors, study_id: int, round_: int, members: list[Member]) -> MerkleTree:
    tree = MerkleTree(m.leaf for m in members)
    contribute(service.exchange, actors.hospital, study_id, round_, tree.root, len(members),
                                        keccak(text=f"update {round_}"))
    return tree


def _body(study_id: int, round_: int, tree: MerkleTree, members: list[Member], *, complete: bool = True
          ) -> dict[str, Any]:
    return {"study_id": study_id, "round": round_, "cohort_root": "0x" + tree.root.hex(), "cohort_count": len(tree),
            "complete": complete,
            "proofs": [{"patient": m.patient.address, "record_id": m.record_id, "kind": SINOGRAM,
                        "proof": ["0x" + p.hex() for p in tree.proof(m.leaf)]} for m in members]}


def _publish(service: Harness, actors: Actors, body: dict[str, Any]) -> Any:
    return service.client.post("/v1/cohort-proofs", json=body, headers=service.bearer(actors.hospital))


def _members(actors: Actors, n: int = 3) -> list[Member]:
    return [Member(actors.patients[i], _record(f"record {i}")) for i in range(n)]


def test_a_patient_sees_the_rounds_that_used_their_records_with_proofs_the_chain_accepts(
        service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    tree = _contribute(service, actors, study_id, 1, members)
    assert _publish(service, actors, _body(study_id, 1, tree, members)).status_code == 201
    (use,) = service.client.get("/v1/me/data-uses", headers=service.bearer(members[0].patient)).json()
    assert (use["study_id"], use["hospital"], use["researcher"]) == (study_id, actors.hospital.address,
                                                                     actors.researcher.address)
    (round_1,) = use["rounds"]
    (record,) = round_1["records"]
    assert round_1["included"] is True
    assert record["leaf"] == "0x" + members[0].leaf.hex()
    assert service.exchange.studies.in_cohort(study_id, 1, actors.hospital.address, bytes.fromhex(record["leaf"][2:]),
                                              [bytes.fromhex(p[2:]) for p in record["proof"]])


def test_a_patient_sees_no_other_patients_records(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors, 2)
    tree = _contribute(service, actors, study_id, 1, members)
    _publish(service, actors, _body(study_id, 1, tree, members))
    (use,) = service.client.get("/v1/me/data-uses", headers=service.bearer(members[1].patient)).json()
    assert [r["record_id"] for r in use["rounds"][0]["records"]] == [members[1].record_id]
    outsider = service.client.get("/v1/me/data-uses", headers=service.bearer(actors.patients[5])).json()
    assert outsider == []


def test_a_revoked_patient_sees_that_the_next_round_left_them_out(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    first = _contribute(service, actors, study_id, 1, members)
    _publish(service, actors, _body(study_id, 1, first, members))
    service.exchange.studies.record_round(actors.coordinator, study_id, 1, keccak(text="model 1"),
                                          [actors.hospital.address])
    remaining = members[1:]  # patient 0 revoked between the rounds
    second = _contribute(service, actors, study_id, 2, remaining)
    _publish(service, actors, _body(study_id, 2, second, remaining))
    (use,) = service.client.get("/v1/me/data-uses", headers=service.bearer(members[0].patient)).json()
    assert [(r["round"], r["included"], len(r["records"])) for r in use["rounds"]] == [(1, True, 1), (2, False, 0)]


def test_a_round_not_yet_published_in_full_is_not_called_a_round_without_me(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    tree = _contribute(service, actors, study_id, 1, members)
    assert _publish(service, actors, _body(study_id, 1, tree, members[1:], complete=False)).status_code == 201
    headers = service.bearer(members[1].patient)
    assert service.client.get("/v1/me/data-uses", headers=headers).json()[0]["rounds"][0]["included"] is True
    absent = service.client.get("/v1/me/data-uses", headers=service.bearer(members[0].patient)).json()
    assert absent == []  # nothing of patient 0 published yet: no claim either way


def test_a_proof_that_does_not_lead_to_the_anchored_root_is_refused_and_nothing_stored(
        service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    tree = _contribute(service, actors, study_id, 1, members)
    body = _body(study_id, 1, tree, members)
    body["proofs"][0]["record_id"] = _record("a record that was not in the cohort")
    refused = _publish(service, actors, body)
    assert refused.status_code == 422
    assert refused.json()["type"] == "urn:metai:problem:proof-refused"
    for member in members:
        assert service.client.get("/v1/me/data-uses", headers=service.bearer(member.patient)).json() == []


def test_proofs_for_a_root_the_hospital_did_not_anchor_are_refused(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    _contribute(service, actors, study_id, 1, members)
    other = MerkleTree(m.leaf for m in members[:2])
    refused = _publish(service, actors, _body(study_id, 1, other, members[:2]))
    assert refused.status_code == 409
    assert re.search(r"anchored root 0x[0-9a-f]{64} with 3 records", refused.json()["detail"])


def test_only_the_contributing_hospital_publishes(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    tree = _contribute(service, actors, study_id, 1, members)
    body = _body(study_id, 1, tree, members)
    as_patient = service.client.post("/v1/cohort-proofs", json=body, headers=service.bearer(actors.patients[0]))
    assert as_patient.status_code == 403
    as_other = service.client.post("/v1/cohort-proofs", json=body, headers=service.bearer(actors.hospital2))
    assert as_other.status_code == 409


def test_a_round_marked_complete_with_proofs_missing_is_refused(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    tree = _contribute(service, actors, study_id, 1, members)
    refused = _publish(service, actors, _body(study_id, 1, tree, members[:2], complete=True))
    assert refused.status_code == 422
    assert "2 of its 3 records" in refused.json()["detail"]


def test_publishing_the_same_proofs_twice_changes_nothing(service: Harness, actors: Actors) -> None:
    study_id = _study(service, actors)
    members = _members(actors)
    tree = _contribute(service, actors, study_id, 1, members)
    first = _publish(service, actors, _body(study_id, 1, tree, members)).json()
    again = _publish(service, actors, _body(study_id, 1, tree, members)).json()
    assert first == again == {"study_id": study_id, "round": 1, "hospital": actors.hospital.address,
                              "published": 3, "cohort_count": 3, "complete": True}


def test_the_receipt_holds_every_consent_transaction_and_proof(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    grant = service.exchange.consent.grant(patient, Scope(purpose=Purpose.HMB), Kind.CT_SINOGRAM, 2**64 - 1)
    study_id = _study(service, actors)
    members = _members(actors)
    tree = _contribute(service, actors, study_id, 1, members)
    _publish(service, actors, _body(study_id, 1, tree, members))
    headers = service.bearer(patient)
    receipt = service.client.get("/v1/me/receipt", headers=headers).json()
    assert (receipt["format"], receipt["version"], receipt["patient"]) == ("metai-patient-receipt", 1, patient.address)
    assert receipt["consents"][0]["granted_tx"] == grant.tx_hash
    assert receipt["data_uses"][0]["rounds"][0]["records"][0]["leaf"] == "0x" + members[0].leaf.hex()
    assert receipt["contracts"]["StudyRegistry"] == service.exchange.studies.address


def test_the_printable_receipt_is_a_page_without_inline_script_or_style(service: Harness, actors: Actors) -> None:
    patient = actors.patients[0]
    service.exchange.consent.grant(patient, Scope(purpose=Purpose.HMB), Kind.CT_SINOGRAM, 2**64 - 1)
    page = service.client.get("/v1/me/receipt.html", headers=service.bearer(patient))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert patient.address in page.text
    assert "health, medical or biomedical research" in page.text
    assert "<script" not in page.text
    assert "style=" not in page.text
    assert service.client.get("/static/receipt.css").status_code == 200
