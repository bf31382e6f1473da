"""Sealed cohort proofs, from an attacker's side: only the patient opens their envelope, a tag names one round
only, any changed byte is refused, and an envelope's size does not tell how many records it holds."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from contracts.sealing import (
    KEY_INFO,
    MAX_PADDED,
    MIN_BUCKET,
    OVERHEAD,
    TAG_INFO,
    VERSION,
    SealedContent,
    SealedRecord,
    SealingError,
    address_of,
    open_envelope,
    public_key_of,
    recover_public_key,
    seal,
    sealed_tag,
)

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
ROOT = "0x" + "ab" * 32


@pytest.fixture(scope="module")
def hospital() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


@pytest.fixture(scope="module")
def patient() -> LocalAccount:
    account: LocalAccount = Account.create()
    return account


def _records(n: int) -> tuple[SealedRecord, ...]:
    return tuple(SealedRecord(hashlib.sha256(f"record {i}".encode()).hexdigest(), 2,
                              tuple("0x" + hashlib.sha256(f"sibling {i} {d}".encode()).hexdigest() for d in range(10)))
                 for i in range(n))


def _content(hospital: LocalAccount, n: int = 2, round_: int = 1) -> SealedContent:
    return SealedContent(study_id=7, round=round_, hospital=hospital.address, cohort_root=ROOT, records=_records(n))


def _tag(own: LocalAccount, other: LocalAccount, round_: int = 1, **context: Any) -> bytes:
    values: dict[str, Any] = {"chain_id": 31337, "study_registry": REGISTRY, "study_id": 7, "round_": round_,
                                 **context}
    return sealed_tag(own.key, public_key_of(other.key), **values)


def test_the_patient_opens_what_the_hospital_sealed(hospital: LocalAccount, patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    content = _content(hospital)
    assert open_envelope(patient.key, tag, seal(public_key_of(patient.key), tag, content)) == content


def test_hospital_and_patient_derive_the_same_tag_each_from_their_own_key(hospital: LocalAccount,
                                                                          patient: LocalAccount) -> None:
    assert _tag(hospital, patient) == _tag(patient, hospital)


def test_the_tag_ignores_the_registry_addresss_letter_case(hospital: LocalAccount, patient: LocalAccount) -> None:
    assert _tag(hospital, patient, study_registry=REGISTRY.lower()) == _tag(patient, hospital)


@pytest.mark.parametrize("other", [{"round_": 2}, {"study_id": 8}, {"chain_id": 1},
                                   {"study_registry": "0x" + "11" * 20}], ids=lambda o: next(iter(o)))
def test_a_tag_of_one_round_matches_no_other(hospital: LocalAccount, patient: LocalAccount,
                                             other: dict[str, Any]) -> None:
    assert _tag(hospital, patient) != _tag(patient, hospital, **other)


def test_another_hospitals_tag_for_the_same_patient_and_round_differs(hospital: LocalAccount,
                                                                      patient: LocalAccount) -> None:
    assert _tag(hospital, patient) != _tag(Account.create(), patient)


def test_a_second_patient_cannot_open_the_first_ones_envelope(hospital: LocalAccount, patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    envelope = seal(public_key_of(patient.key), tag, _content(hospital))
    with pytest.raises(SealingError, match="does not open with this key and tag"):
        open_envelope(Account.create().key, tag, envelope)


def test_the_hospital_cannot_open_what_it_sealed_for_the_patient(hospital: LocalAccount, patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    with pytest.raises(SealingError, match="does not open"):
        open_envelope(hospital.key, tag, seal(public_key_of(patient.key), tag, _content(hospital)))


def test_an_envelope_stored_under_another_rounds_tag_does_not_open(hospital: LocalAccount,
                                                                   patient: LocalAccount) -> None:
    envelope = seal(public_key_of(patient.key), _tag(hospital, patient, round_=1), _content(hospital))
    with pytest.raises(SealingError, match="does not open"):
        open_envelope(patient.key, _tag(patient, hospital, round_=2), envelope)


def test_every_single_byte_flip_is_refused(hospital: LocalAccount, patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    envelope = seal(public_key_of(patient.key), tag, _content(hospital))
    opened = 0
    for position in range(len(envelope)):
        for flip in (0x01, 0x80):
            altered = bytearray(envelope)
            altered[position] ^= flip
            try:
                open_envelope(patient.key, tag, bytes(altered))
            except SealingError:
                continue
            opened += 1
    assert opened == 0


def test_a_truncated_or_extended_envelope_is_refused(hospital: LocalAccount, patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    envelope = seal(public_key_of(patient.key), tag, _content(hospital))
    for altered in (envelope[:-1], envelope + b"\0", envelope[:OVERHEAD], b""):
        with pytest.raises(SealingError):
            open_envelope(patient.key, tag, altered)


def test_an_envelope_of_another_version_is_refused_by_name(hospital: LocalAccount, patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    envelope = bytearray(seal(public_key_of(patient.key), tag, _content(hospital)))
    envelope[0] = 2
    with pytest.raises(SealingError, match="envelope version 2; this code opens version 1"):
        open_envelope(patient.key, tag, bytes(envelope))


def test_the_envelope_size_does_not_tell_how_many_records_it_holds(hospital: LocalAccount,
                                                                   patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    sizes = {n: len(seal(public_key_of(patient.key), tag, _content(hospital, n))) for n in (1, 2, 3, 4)}
    assert set(sizes.values()) == {MIN_BUCKET + OVERHEAD}


def test_a_larger_content_takes_the_next_power_of_two_bucket(hospital: LocalAccount, patient: LocalAccount) -> None:
    tag = _tag(hospital, patient)
    sizes = [len(seal(public_key_of(patient.key), tag, _content(hospital, n))) - OVERHEAD for n in (8, 20, 40)]
    assert sizes == [2 * MIN_BUCKET, 4 * MIN_BUCKET, 8 * MIN_BUCKET]


def test_a_content_beyond_the_largest_bucket_is_refused(hospital: LocalAccount, patient: LocalAccount) -> None:
    with pytest.raises(SealingError, match=f"at most {MAX_PADDED - 4} fit in one envelope"):
        seal(public_key_of(patient.key), _tag(hospital, patient), _content(hospital, 2000))


def test_the_enrolment_signature_gives_the_patients_public_key(patient: LocalAccount) -> None:
    text = "MeTAI exchange: link my key to my records\nNonce: 01"
    signature = patient.sign_message(encode_defunct(text=text)).signature
    key = recover_public_key(text, signature)
    assert key == public_key_of(patient.key)
    assert address_of(key) == patient.address


def test_a_malformed_signature_or_public_key_is_refused(hospital: LocalAccount) -> None:
    with pytest.raises(SealingError, match="a signature has 65 bytes, not 64"):
        recover_public_key("text", bytes(64))
    with pytest.raises(SealingError, match="not a secp256k1 public key"):
        sealed_tag(hospital.key, b"\x04" + bytes(64), chain_id=1, study_registry=REGISTRY, study_id=1, round_=1)


def test_the_documented_specification_names_the_constants_the_code_uses() -> None:
    spec = (Path(__file__).parents[2] / "docs" / "coordinator.md").read_text("utf-8")
    assert f'info = "{TAG_INFO.decode()}"' in spec
    assert f'info = "{KEY_INFO.decode()}"' in spec
    assert f"version: `0x{VERSION:02x}`" in spec
    assert f"So an envelope is P + {OVERHEAD} bytes" in spec
    assert f"smallest of {MIN_BUCKET}, {2 * MIN_BUCKET}" in spec
    assert f"{MAX_PADDED} (4 KiB times" in spec
