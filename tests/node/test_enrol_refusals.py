"""Enrolment refuses, each with an error that says why: expired, other hospital's, reused, wrong key.

"A challenge names the hospital, a nonce and a 24 h expiry, and nothing about the patient; it can
be used once" (docs/node.md, Patients). The clock is moved by
replacing the node's notion of "now" in node.enrol, as a node left running for a day would see.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from pydicom.data import get_testdata_file
from sqlalchemy import select

import node.enrol
from node.catalog import Challenge, Patient, utcnow
from node.enrol import enrol, issue_challenge
from node.errors import EnrolmentError
from node.ingest import Ingestor
from node.node import Node

LOCAL_ID = "1CT1"  # the PatientID of pydicom's public CT_small.dcm
DAY = dt.timedelta(hours=24)


def _node(make_node, tmp_path: Path, name: str) -> Node:  # type: ignore[no-untyped-def]
    n = make_node(name, role=False)
    folder = tmp_path / f"in-{name.replace(' ', '-')}"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder)
    Ingestor(n).run([folder])
    return n


@pytest.fixture
def hospital(make_node, tmp_path: Path) -> Node:  # type: ignore[no-untyped-def]
    return _node(make_node, tmp_path, "General Hospital")


def sign(account: LocalAccount, text: str) -> str:
    return "0x" + account.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


def linked_address(n: Node) -> str | None:
    with n.sessions() as s:
        return s.scalar(select(Patient.address))


def clock_at(monkeypatch: pytest.MonkeyPatch, moment: dt.datetime) -> None:
    monkeypatch.setattr(node.enrol, "utcnow", lambda: moment)


# ---------------------------------------------------------------- expiry


def test_challenge_signed_within_a_day_is_accepted(hospital: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    patient = Account.create()
    issued_at = utcnow()
    challenge = issue_challenge(hospital, LOCAL_ID)
    clock_at(monkeypatch, issued_at + DAY - dt.timedelta(minutes=1))
    enrol(hospital, LOCAL_ID, patient.address, sign(patient, challenge.text))
    assert linked_address(hospital) == patient.address


def test_expired_challenge_is_refused(hospital: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    patient = Account.create()
    challenge = issue_challenge(hospital, LOCAL_ID)
    clock_at(monkeypatch, utcnow() + DAY + dt.timedelta(minutes=1))
    expiry = challenge.expires_at.isoformat(timespec="seconds")
    with pytest.raises(EnrolmentError, match=rf"challenge for '1CT1' expired at {re.escape(expiry)}Z.*issue a new one"):
        enrol(hospital, LOCAL_ID, patient.address, sign(patient, challenge.text))
    assert linked_address(hospital) is None


def test_expired_challenge_is_refused_while_a_newer_one_is_open(hospital: Node,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    patient = Account.create()
    old = issue_challenge(hospital, LOCAL_ID)
    clock_at(monkeypatch, utcnow() + DAY + dt.timedelta(minutes=1))
    issue_challenge(hospital, LOCAL_ID)
    with pytest.raises(EnrolmentError, match="challenge for '1CT1' expired at"):
        enrol(hospital, LOCAL_ID, patient.address, sign(patient, old.text))
    assert linked_address(hospital) is None


# ---------------------------------------------------------------- another hospital


def test_challenge_of_another_hospital_is_refused(make_node, hospital: Node, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    other = _node(make_node, tmp_path, "Other Hospital")
    patient = Account.create()
    ours, theirs = issue_challenge(hospital, LOCAL_ID), issue_challenge(other, LOCAL_ID)
    assert f"Hospital: General Hospital ({hospital.address})" in ours.text
    assert f"Hospital: Other Hospital ({other.address})" in theirs.text
    signature = sign(patient, theirs.text)
    with pytest.raises(EnrolmentError, match=rf"over none of the challenges General Hospital \({hospital.address}\) "
                                             r"issued for '1CT1'"):
        enrol(hospital, LOCAL_ID, patient.address, signature)
    assert linked_address(hospital) is None
    enrol(other, LOCAL_ID, patient.address, signature)  # the signature itself is sound, for the other hospital
    assert linked_address(other) == patient.address


def test_challenge_of_another_hospital_is_refused_when_none_was_issued_here(make_node, hospital: Node,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    other = _node(make_node, tmp_path, "Other Hospital")
    patient = Account.create()
    signature = sign(patient, issue_challenge(other, LOCAL_ID).text)
    with pytest.raises(EnrolmentError, match="no challenge was issued for '1CT1' on this node"):
        enrol(hospital, LOCAL_ID, patient.address, signature)
    assert linked_address(hospital) is None


# ---------------------------------------------------------------- reuse


def test_reused_challenge_is_refused(hospital: Node) -> None:
    patient = Account.create()
    challenge = issue_challenge(hospital, LOCAL_ID)
    signature = sign(patient, challenge.text)
    enrol(hospital, LOCAL_ID, patient.address, signature)
    with pytest.raises(EnrolmentError, match="challenge for '1CT1' was already used"):
        enrol(hospital, LOCAL_ID, patient.address, signature)


def test_reused_challenge_is_refused_while_a_newer_one_is_open(hospital: Node) -> None:
    first, second = Account.create(), Account.create()
    signature = sign(first, issue_challenge(hospital, LOCAL_ID).text)
    enrol(hospital, LOCAL_ID, first.address, signature)
    issue_challenge(hospital, LOCAL_ID)  # e.g. the patient lost their key and re-enrols
    with pytest.raises(EnrolmentError, match="challenge for '1CT1' was already used"):
        enrol(hospital, LOCAL_ID, first.address, signature)
    # A replayed signature cannot link another address either.
    with pytest.raises(EnrolmentError, match=f"does not prove control of {second.address}"):
        enrol(hospital, LOCAL_ID, second.address, signature)
    assert linked_address(hospital) == first.address


# ---------------------------------------------------------------- another key


def test_challenge_signed_by_another_key_is_refused(hospital: Node) -> None:
    patient, other = Account.create(), Account.create()
    challenge = issue_challenge(hospital, LOCAL_ID)
    with pytest.raises(EnrolmentError,
                       match=f"does not prove control of {patient.address}: .* made by {other.address}"):
        enrol(hospital, LOCAL_ID, patient.address, sign(other, challenge.text))
    assert linked_address(hospital) is None


def test_race_with_one_signature_enrols_once(hospital: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two submissions of one signature: the second runs to completion while the first is between
    # reading the challenge and consuming it (here, while it checks the signature).
    patient = Account.create()
    signature = sign(patient, issue_challenge(hospital, LOCAL_ID).text)
    check_signature = node.enrol._signer
    raced: list[str] = []

    def racing_signer(text: str, sig: bytes) -> str | None:
        if not raced:
            raced.append("running")  # the racing enrolment itself checks with the real function
            monkeypatch.setattr(node.enrol, "_signer", check_signature)
            raced[0] = enrol(hospital, LOCAL_ID, patient.address, signature)
        return check_signature(text, sig)

    monkeypatch.setattr(node.enrol, "_signer", racing_signer)
    with pytest.raises(EnrolmentError, match=r"was already used .* by an enrolment that ran at the same time"):
        enrol(hospital, LOCAL_ID, patient.address, signature)
    with hospital.sessions() as s:
        assert raced == [s.scalar(select(Patient.pseudonym))]  # the racing enrolment went through
    assert linked_address(hospital) == patient.address


def test_no_open_challenge_is_reported_as_such(hospital: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    patient, other = Account.create(), Account.create()
    challenge = issue_challenge(hospital, LOCAL_ID)
    clock_at(monkeypatch, utcnow() + DAY + dt.timedelta(minutes=1))
    with pytest.raises(EnrolmentError, match=r"no open challenge for '1CT1' \(each one issued was used or has expired"):
        enrol(hospital, LOCAL_ID, patient.address, sign(other, challenge.text))


# ---------------------------------------------------------------- what a challenge says, bad input


def test_challenge_names_hospital_nonce_and_a_24_hour_expiry_and_nothing_of_the_patient(hospital: Node) -> None:
    before = utcnow()
    first = issue_challenge(hospital, LOCAL_ID)
    after = utcnow()
    second = issue_challenge(hospital, LOCAL_ID)
    with hospital.sessions() as s:
        pseudonym = s.scalar(select(Patient.pseudonym))
    lines = first.text.splitlines()
    nonce = lines[2].removeprefix("Nonce: ")
    assert lines == [
        "MeTAI exchange: link my key to my records",
        f"Hospital: General Hospital ({hospital.address})",
        f"Nonce: {nonce}",
        f"Expires: {first.expires_at.isoformat(timespec='seconds')}Z",
    ]
    assert re.fullmatch("[0-9a-f]{32}", nonce)
    assert f"Nonce: {nonce}" not in second.text
    assert before + DAY <= first.expires_at <= after + DAY
    assert pseudonym not in first.text  # the text travels in cohort manifests
    assert LOCAL_ID not in first.text


def test_a_challenge_an_earlier_version_issued_naming_the_pseudonym_is_refused(hospital: Node) -> None:
    patient = Account.create()
    with hospital.sessions() as s:
        pseudonym = s.scalar(select(Patient.pseudonym))
        text = (f"MeTAI exchange: link my key to my records\nHospital: General Hospital ({hospital.address})\n"
                f"Patient reference: {pseudonym}\nNonce: {'ab' * 16}\nExpires: 2999-01-01T00:00:00Z")
        s.add(Challenge(nonce="ab" * 16, patient_pseudonym=pseudonym, text=text,
                        expires_at=utcnow() + DAY))
        s.commit()
    with pytest.raises(EnrolmentError, match=f"nonce {'ab' * 16}\\) was issued by an earlier version of the node "
                                             "and names the patient's pseudonym.*issue a new one"):
        enrol(hospital, LOCAL_ID, patient.address, sign(patient, text))
    assert linked_address(hospital) is None


def test_expiry_instant_itself_is_too_late(hospital: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    patient = Account.create()
    challenge = issue_challenge(hospital, LOCAL_ID)
    clock_at(monkeypatch, challenge.expires_at)
    with pytest.raises(EnrolmentError, match="challenge for '1CT1' expired at"):
        enrol(hospital, LOCAL_ID, patient.address, sign(patient, challenge.text))


def test_enrolment_time_is_recorded(hospital: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    patient = Account.create()
    challenge = issue_challenge(hospital, LOCAL_ID)
    moment = utcnow() + dt.timedelta(hours=3)
    clock_at(monkeypatch, moment)
    enrol(hospital, LOCAL_ID, patient.address, sign(patient, challenge.text))
    with hospital.sessions() as s:
        assert s.scalar(select(Patient.enrolled_at)) == moment


MALFORMED = {
    "short address": (LOCAL_ID, "0x1234", "0x" + "22" * 65, "'0x1234' is not an Ethereum address"),
    "signature not hex": (LOCAL_ID, "0x" + "11" * 20, "0x" + "zz" * 65,
                          r"^the signature must be hex \(0x followed by 130 hex digits\)$"),
    "signature of 64 bytes": (LOCAL_ID, "0x" + "11" * 20, "0x" + "22" * 64, "the signature has 64 bytes, expected 65"),
    "signature with r = s = 0": (LOCAL_ID, "0x" + "11" * 20, "0x" + "00" * 65,
                                 r"made by nobody \(malformed signature\)"),
    "signature with v = 34": (LOCAL_ID, "0x" + "11" * 20, "0x" + "22" * 65,
                              r"made by nobody \(malformed signature\)"),
    "unknown patient": ("MARK-0404-NOP", "0x" + "11" * 20, "0x" + "22" * 65, "no patient 'MARK-0404-NOP' on this node"),
}


def test_malformed_input_is_refused(hospital: Node) -> None:
    # One node for all the cases (a node costs seconds to set up); each case is checked alone.
    issue_challenge(hospital, LOCAL_ID)
    refused = {}
    for case, (local_id, address, signature, message) in MALFORMED.items():
        with pytest.raises(EnrolmentError, match=message):
            enrol(hospital, local_id, address, signature)
        refused[case] = linked_address(hospital)
    assert refused == dict.fromkeys(MALFORMED)
