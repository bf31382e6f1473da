"""Sealing a kept round for publication: one envelope per patient that only that patient opens, with proofs to the
anchored root; and a node set to sealed never publishes plain."""

from __future__ import annotations

import base64

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak

from contracts.leaves import cohort_leaf
from contracts.merkle import MerkleTree, verify
from contracts.sealing import SealingError, open_envelope, public_key_of, sealed_tag
from node.errors import NodeConfigError
from node.kept_cohort import KeptCohort, KeptMember
from node.proof_publish import PublishError
from node.sealed_publish import Sealer, proof_mode

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


@pytest.fixture(scope="module")
def people() -> tuple[LocalAccount, list[LocalAccount]]:
    return Account.create(), [Account.create() for _ in range(3)]


def _kept(patients: list[LocalAccount], records: int = 2) -> KeptCohort:
    members = tuple(KeptMember(keccak(text=f"{p.address} {n}").hex(), 2, p.address)
                    for p in patients for n in range(records))
    tree = MerkleTree(cohort_leaf(m.record_id, m.kind, m.patient) for m in members)
    return KeptCohort(4, 1, 100, "0x" + tree.root.hex(), len(members), members)


def _sealer(hospital: LocalAccount, patients: list[LocalAccount]) -> Sealer:
    return Sealer(bytes(hospital.key), 31337, REGISTRY, {p.address: public_key_of(p.key) for p in patients})


def test_each_patient_gets_one_envelope_with_their_records_and_proofs_to_the_root(
        people: tuple[LocalAccount, list[LocalAccount]]) -> None:
    hospital, patients = people
    kept = _kept(patients)
    items = _sealer(hospital, patients).items(kept)
    assert len(items) == len(patients)
    for patient in patients:
        tag = sealed_tag(bytes(patient.key), public_key_of(hospital.key), chain_id=31337, study_registry=REGISTRY,
                         study_id=4, round_=1)
        (item,) = [i for i in items if i["tag"] == "0x" + tag.hex()]
        content = open_envelope(bytes(patient.key), tag, base64.b64decode(item["ciphertext"]))
        assert (content.study_id, content.round, content.hospital, content.cohort_root) == (
            4, 1, hospital.address, kept.root)
        assert {r.record_id for r in content.records} == {m.record_id for m in kept.members
                                                          if m.patient == patient.address}
        for record in content.records:
            leaf = cohort_leaf(record.record_id, record.kind, patient.address)
            assert verify(bytes.fromhex(kept.root[2:]), leaf, [bytes.fromhex(p[2:]) for p in record.proof])


def test_no_patient_opens_another_ones_envelope(people: tuple[LocalAccount, list[LocalAccount]]) -> None:
    hospital, patients = people
    items = _sealer(hospital, patients).items(_kept(patients))
    intruder = patients[0]
    mine = "0x" + sealed_tag(bytes(intruder.key), public_key_of(hospital.key), chain_id=31337,
                             study_registry=REGISTRY, study_id=4, round_=1).hex()
    for item in items:
        if item["tag"] != mine:
            with pytest.raises(SealingError, match="does not open"):
                open_envelope(bytes(intruder.key), bytes.fromhex(mine[2:]), base64.b64decode(item["ciphertext"]))


def test_a_kept_cohort_altered_after_anchoring_is_not_sealed(people: tuple[LocalAccount, list[LocalAccount]]) -> None:
    hospital, patients = people
    kept = _kept(patients)
    altered = KeptCohort(kept.study_id, kept.round, kept.block, kept.root, kept.count, kept.members[1:])
    with pytest.raises(PublishError, match="the kept file was altered"):
        _sealer(hospital, patients).items(altered)


def test_a_patient_without_a_key_is_refused(people: tuple[LocalAccount, list[LocalAccount]]) -> None:
    hospital, patients = people
    with pytest.raises(PublishError, match=f"patient {patients[2].address} has no public key on this node"):
        _sealer(hospital, patients[:2]).items(_kept(patients))


@pytest.mark.parametrize(("configured", "flag", "mode"), [
    ("plain", None, "plain"), ("sealed", None, "sealed"), ("plain", True, "sealed"), ("plain", False, "plain"),
    ("sealed", True, "sealed")])
def test_the_flag_chooses_the_mode_else_the_setting(configured: str, flag: bool | None, mode: str) -> None:
    assert proof_mode(configured, flag) == mode  # type: ignore[arg-type]


def test_a_node_set_to_sealed_refuses_plain() -> None:
    with pytest.raises(NodeConfigError, match="never publishes plain ones; drop --plain"):
        proof_mode("sealed", False)


def test_the_sealer_does_not_show_the_hospitals_key(people: tuple[LocalAccount, list[LocalAccount]]) -> None:
    hospital, patients = people
    shown = repr(_sealer(hospital, patients))
    assert "hospital_key" not in shown
    assert repr(bytes(hospital.key)) not in shown
