"""Enrolment: a patient proves control of an address by signing the node's challenge."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from pydicom.data import get_testdata_file
from sqlalchemy import select

from contracts.sealing import public_key_of
from node.catalog import CATALOG_FILE, Enrolment, Patient, PatientKey
from node.enrol import enrol, issue_challenge
from node.errors import EnrolmentError
from node.ingest import Ingestor
from node.node import Node
from tests.conftest import NODE_PASSPHRASE

LOCAL_ID = "1CT1"  # the PatientID of pydicom's public CT_small.dcm


@pytest.fixture
def node(make_node, tmp_path: Path):  # type: ignore[no-untyped-def]
    n = make_node(role=False)
    (tmp_path / "in").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "in")
    Ingestor(n).run([tmp_path / "in"])
    return n


def sign(account, text: str) -> str:  # type: ignore[no-untyped-def]
    return "0x" + account.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


def test_valid_signature_links_the_address(node) -> None:
    patient = Account.create()
    challenge = issue_challenge(node, LOCAL_ID)
    pseudonym = enrol(node, LOCAL_ID, patient.address, sign(patient, challenge.text))
    with node.sessions() as s:
        row = s.get(Patient, pseudonym)
        assert row is not None
        assert row.address == patient.address
        assert node.vault.unseal(row.pseudonym, row.sealed).address == patient.address


def test_signature_by_another_key_is_refused(node) -> None:
    patient, other = Account.create(), Account.create()
    challenge = issue_challenge(node, LOCAL_ID)
    with pytest.raises(EnrolmentError, match=f"made by {other.address}"):
        enrol(node, LOCAL_ID, patient.address, sign(other, challenge.text))


def test_signature_over_another_challenge_is_refused(node) -> None:
    patient = Account.create()
    issue_challenge(node, LOCAL_ID)
    forged_text = "MeTAI exchange: link my key to my records\nNonce: 00"
    with pytest.raises(EnrolmentError, match="does not prove control"):
        enrol(node, LOCAL_ID, patient.address, sign(patient, forged_text))
    with node.sessions() as s:
        assert s.scalar(select(Patient.address)) is None


def test_challenge_is_single_use(node) -> None:
    patient = Account.create()
    challenge = issue_challenge(node, LOCAL_ID)
    signature = sign(patient, challenge.text)
    enrol(node, LOCAL_ID, patient.address, signature)
    with pytest.raises(EnrolmentError, match="was already used"):
        enrol(node, LOCAL_ID, patient.address, signature)


def test_unknown_patient_is_refused(node) -> None:
    with pytest.raises(EnrolmentError, match="no patient 'nobody'"):
        issue_challenge(node, "nobody")


def test_enrolment_keeps_the_public_key_the_signature_recovers(node) -> None:
    patient = Account.create()
    challenge = issue_challenge(node, LOCAL_ID)
    pseudonym = enrol(node, LOCAL_ID, patient.address, sign(patient, challenge.text))
    with node.sessions() as s:
        key = s.get(PatientKey, patient.address)
        assert key is not None
        assert (key.pseudonym, key.public_key) == (pseudonym, public_key_of(patient.key))


def test_a_catalog_made_before_patient_keys_opens_keeps_its_patients_and_gains_the_table(node) -> None:
    patient = Account.create()
    enrol(node, LOCAL_ID, patient.address, sign(patient, issue_challenge(node, LOCAL_ID).text))
    with sqlite3.connect(node.dir / CATALOG_FILE) as db:
        db.execute("DROP TABLE patient_keys")  # the catalog as a node before sealed proofs made it
    reopened = Node(node.dir, NODE_PASSPHRASE)
    with reopened.sessions() as s:
        assert s.scalar(select(Patient.address)) == patient.address
        assert s.scalars(select(PatientKey)).all() == []  # enrolled before: no key until re-enrolment
    enrol(reopened, LOCAL_ID, patient.address, sign(patient, issue_challenge(reopened, LOCAL_ID).text))
    with reopened.sessions() as s:
        assert s.get(PatientKey, patient.address) is not None


def test_enrolment_keeps_the_signed_challenge_and_its_signature(node) -> None:
    patient = Account.create()
    challenge = issue_challenge(node, LOCAL_ID)
    signature = sign(patient, challenge.text)
    pseudonym = enrol(node, LOCAL_ID, patient.address, signature)
    with node.sessions() as s:
        kept = s.get(Enrolment, patient.address)
        assert kept is not None
        assert (kept.pseudonym, kept.challenge, kept.signature) == (pseudonym, challenge.text, signature)
    assert Account.recover_message(encode_defunct(text=kept.challenge), signature=kept.signature) == patient.address


def test_a_refused_enrolment_keeps_no_signed_challenge(node) -> None:
    patient, other = Account.create(), Account.create()
    challenge = issue_challenge(node, LOCAL_ID)
    with pytest.raises(EnrolmentError, match="does not prove control"):
        enrol(node, LOCAL_ID, patient.address, sign(other, challenge.text))
    with node.sessions() as s:
        assert s.scalars(select(Enrolment)).all() == []


def test_enrolling_again_keeps_the_newest_signed_challenge_of_the_address(node) -> None:
    patient = Account.create()
    enrol(node, LOCAL_ID, patient.address, sign(patient, issue_challenge(node, LOCAL_ID).text))
    again = issue_challenge(node, LOCAL_ID)
    enrol(node, LOCAL_ID, patient.address, sign(patient, again.text))
    with node.sessions() as s:
        assert [e.challenge for e in s.scalars(select(Enrolment))] == [again.text]


def test_a_catalog_made_before_signed_challenges_were_kept_opens_and_gains_the_table(node) -> None:
    patient = Account.create()
    enrol(node, LOCAL_ID, patient.address, sign(patient, issue_challenge(node, LOCAL_ID).text))
    with sqlite3.connect(node.dir / CATALOG_FILE) as db:
        db.execute("DROP TABLE enrolments")  # the catalog as a node before cohort manifests made it
    reopened = Node(node.dir, NODE_PASSPHRASE)
    with reopened.sessions() as s:
        assert s.scalar(select(Patient.address)) == patient.address
        assert s.scalars(select(Enrolment)).all() == []  # enrolled before: no proof until re-enrolment
    again = issue_challenge(reopened, LOCAL_ID)
    enrol(reopened, LOCAL_ID, patient.address, sign(patient, again.text))
    with reopened.sessions() as s:
        assert [e.challenge for e in s.scalars(select(Enrolment))] == [again.text]
