"""The cohort of a study at a block is exactly the consenting, enrolled patients' records."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.crypto import keccak
from pydicom.data import get_testdata_file
from sqlalchemy import select

from contracts.datause import Kind, Purpose, Scope
from contracts.studies import StudyRequest
from deploy.anvil import advance_time
from node.catalog import Patient, Record
from node.cohort import CohortError, build_cohort
from node.datasets import register_drafts
from node.enrol import enrol, issue_challenge
from node.ingest import Ingestor
from tests.chain_steps import contribute
from tests.contracts.merkle_reference import reference_leaf, reference_root

PATIENTS = ["TEST-P1", "TEST-P2", "TEST-P3", "TEST-P4", "TEST-P5", "TEST-P6"]


@pytest.fixture
def setup(make_node, exchange, actors, tmp_path: Path, now: int):  # type: ignore[no-untyped-def]
    node = make_node()
    folder = tmp_path / "in"
    folder.mkdir()
    for i, pid in enumerate(PATIENTS):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientID, ds.PatientName = pid, f"Test^{pid}"
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.save_as(folder / f"{i}.dcm")
    Ingestor(node).run([folder])
    register_drafts(node)
    keys = {}
    for pid in PATIENTS:
        keys[pid] = Account.create()
        text = issue_challenge(node, pid).text
        enrol(node, pid, keys[pid].address, keys[pid].sign_message(encode_defunct(text=text)).signature.hex())
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.DS, disease=77, kinds=Kind.IMAGE, hospitals=(node.address,),
        task_code_hash=keccak(b"task"), rounds=3))
    exchange.studies.approve(node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    c = exchange.consent
    far = now + 10**6
    relay = actors.coordinator
    c.relay(relay, c.sign_grant(keys["TEST-P1"], Scope(purpose=Purpose.GRU), Kind.IMAGE, far))
    c.relay(relay, c.sign_grant(keys["TEST-P2"], Scope(hospital=node.address, purpose=Purpose.HMB), Kind.IMAGE, far))
    c.relay(relay, c.sign_grant(keys["TEST-P3"], Scope(purpose=Purpose.DS, disease=77), Kind.IMAGE, far))
    c.relay(relay, c.sign_grant(keys["TEST-P4"], Scope(purpose=Purpose.DS, disease=77, study_id=study_id),
                                Kind.IMAGE, now + 500))
    c.relay(relay, c.sign_grant(keys["TEST-P5"], Scope(purpose=Purpose.DS, disease=88), Kind.IMAGE, far))
    before_revoke = exchange.chain.block_number
    revoke = c.relay(relay, c.sign_revoke(keys["TEST-P3"], Scope(purpose=Purpose.DS, disease=77)))
    return node, study_id, keys, before_revoke, revoke.block_number


def addresses(cohort, keys, *pids):  # type: ignore[no-untyped-def]
    return {m.patient for m in cohort.members}, {keys[p].address for p in pids}


def test_cohort_before_revocation(setup) -> None:
    node, study_id, keys, before_revoke, _ = setup
    cohort = build_cohort(node, study_id, before_revoke)
    got, want = addresses(cohort, keys, "TEST-P1", "TEST-P2", "TEST-P3", "TEST-P4")
    assert got == want


def test_revocation_expiry_and_wrong_purpose_exclude(setup, anvil) -> None:
    node, study_id, keys, _, revoked_at = setup
    cohort = build_cohort(node, study_id, revoked_at)
    got, want = addresses(cohort, keys, "TEST-P1", "TEST-P2", "TEST-P4")
    assert got == want  # P3 revoked in this block, P5 consented to another disease, P6 to nothing
    advance_time(anvil.rpc_url, 1000)
    later = build_cohort(node, study_id, node.exchange.chain.block_number)
    got, want = addresses(later, keys, "TEST-P1", "TEST-P2")
    assert got == want  # P4's consent expired


def test_cohort_commitment_matches_its_members(setup, exchange) -> None:
    node, study_id, keys, _, revoked_at = setup
    cohort = build_cohort(node, study_id, revoked_at)
    consenting = {keys[p].address for p in ("TEST-P1", "TEST-P2", "TEST-P4")}
    with node.sessions() as s:
        rows = s.execute(select(Record.record_id, Patient.address)
                         .join(Patient, Patient.pseudonym == Record.patient_pseudonym)).all()
    # The root the test's own tree gives over the consenting patients' records.
    leaves = [reference_leaf(["bytes32", "uint8", "address"], [bytes.fromhex(rid), int(Kind.IMAGE), address])
              for rid, address in rows if address in consenting]
    assert (cohort.root, cohort.count) == (reference_root(leaves), 3)
    # Each member's proof starts from that member's own leaf.
    expected_leaf = {rid: leaf for (rid, address), leaf in zip(
        [(rid, address) for rid, address in rows if address in consenting], leaves, strict=True)}
    assert {m.record_id: cohort.proof(m.record_id)[0] for m in cohort.members} == expected_leaf
    # Anchored as the node's round contribution, each member's proof verifies on chain.
    contribute(exchange, node.account, study_id, 1, cohort.root, cohort.count, keccak(b"update"))
    proven = [exchange.studies.in_cohort(study_id, 1, node.address, *cohort.proof(m.record_id))
              for m in cohort.members]
    assert proven == [True, True, True]


def test_proof_of_a_record_outside_the_cohort_is_refused(setup) -> None:
    node, study_id, keys, _, revoked_at = setup
    cohort = build_cohort(node, study_id, revoked_at)
    with node.sessions() as s:
        revoked = s.scalar(select(Record.record_id).join(Patient, Patient.pseudonym == Record.patient_pseudonym)
                           .where(Patient.address == keys["TEST-P3"].address))
    with pytest.raises(CohortError, match=f"record {revoked} is not in the cohort of study {study_id} "
                                          f"at block {revoked_at} \\(3 records\\)"):
        cohort.proof(revoked)


def test_kinds_not_requested_are_not_in_the_cohort(setup, exchange, actors) -> None:
    node, _, _, _, _ = setup
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.GRU, kinds=Kind.CT_SINOGRAM, hospitals=(node.address,),
        task_code_hash=keccak(b"task2"), rounds=1))
    block = exchange.chain.block_number
    cohort = build_cohort(node, study_id, block)
    assert cohort.count == 0
    assert cohort.root == bytes(32)
    assert (cohort.study_id, cohort.block, cohort.members) == (study_id, block, ())  # still says what it is of


def test_cohort_at_a_block_before_the_study_existed_is_refused(setup, exchange, actors, expect_revert) -> None:
    node, _, _, _, _ = setup
    before = exchange.chain.block_number
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.GRU, kinds=Kind.IMAGE, hospitals=(node.address,), task_code_hash=keccak(b"task3"), rounds=1))
    with expect_revert("StudyRegistryUnknownStudy", studyId=study_id):
        build_cohort(node, study_id, before)


def test_members_carry_each_records_path_format_label_and_synthetic_flag(setup) -> None:  # type: ignore[no-untyped-def]
    node, study_id, keys, _, revoked_at = setup
    consenting = [keys[p].address for p in ("TEST-P1", "TEST-P2", "TEST-P4")]
    with node.sessions() as s:
        records = s.execute(select(Record).join(Patient, Patient.pseudonym == Record.patient_pseudonym)
                            .where(Patient.address.in_(consenting))).scalars().all()
        # The training labels and the simulated-scan flag ride along with each record.
        for i, record in enumerate(sorted(records, key=lambda r: r.record_id)):
            record.label, record.synthetic = ("lesion", True) if i == 0 else (f"normal-{i}", False)
        s.commit()
        expected = {r.record_id: (r.path, r.format, r.label, r.synthetic) for r in records}
    cohort = build_cohort(node, study_id, revoked_at)
    assert {m.record_id: (m.path, m.format, m.label, m.synthetic) for m in cohort.members} == expected
    assert [type(m.synthetic) for m in cohort.members] == [bool, bool, bool]


def test_patients_are_asked_about_in_calls_of_the_chunk_given(setup, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    node, study_id, keys, _, revoked_at = setup
    consent, chain = node.exchange.consent, node.exchange.chain
    calls: list[str] = []
    call_raw = chain.call_raw

    def counting(to, data, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(to)
        return call_raw(to, data, **kwargs)

    monkeypatch.setattr(chain, "call_raw", counting)
    cohort = build_cohort(node, study_id, revoked_at, chunk=4)
    assert calls == [consent.address, consent.address]  # six enrolled patients, four per call
    got, want = addresses(cohort, keys, "TEST-P1", "TEST-P2", "TEST-P4")
    assert got == want


def test_a_consent_answer_missing_for_a_patient_is_an_error_not_a_smaller_cohort(setup, monkeypatch,  # type: ignore[no-untyped-def]
                                                                                ) -> None:
    node, study_id, _, _, revoked_at = setup
    consent = node.exchange.consent
    full = consent.permits_batch
    monkeypatch.setattr(consent, "permits_batch", lambda patients, *a, **k: full(patients, *a, **k)[:-1])
    with pytest.raises(ValueError, match="zip"):
        build_cohort(node, study_id, revoked_at)
