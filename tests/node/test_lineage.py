"""A node trains only on records it registered, says so on chain, and accounts for each round in its manifest.

One node holds images of six patients, ingested in four batches: the first three each registered
as a dataset as soon as they were ingested, the last never. Every patient enrolled; all but one
consent to any use of their images. Patient D has a record in each of the first two datasets;
patient E, the one who does not consent, is alone in the third; patient F consents but their
record is in no registered dataset. The local ids and names written into the DICOM files are
planted markers a manifest must never carry.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from pydicom.data import get_testdata_file
from sqlalchemy import select
from typer.testing import CliRunner

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.leaves import record_leaf
from contracts.studies import StudyRequest
from deploy.anvil import mine
from node.catalog import Dataset, DatasetRecord, Patient, Record
from node.cli import app
from node.cohort import build_cohort
from node.datasets import register_drafts
from node.enrol import enrol, issue_challenge
from node.ingest import Ingestor
from node.lineage import cohort_manifest, manifest_json, read_sent_manifest
from node.node import Node
from node.training import anchor_contribution
from tests.conftest import NODE_PASSPHRASE
from tests.contracts.merkle_reference import reference_leaf, reference_root

#: (local patient id, name, batch) of every record ingested; the ids and names are planted markers.
RECORDS = [
    ("LID-PLANT-4417A", "Zorbfield^Amaryllis", "first"),
    ("LID-PLANT-5528B", "Quillington^Bartholomew", "first"),
    ("LID-PLANT-7740D", "Vexmoor^Dorothea", "first"),
    ("LID-PLANT-6639C", "Wimbrough^Cornelius", "second"),
    ("LID-PLANT-7740D", "Vexmoor^Dorothea", "second"),
    ("LID-PLANT-8851E", "Yarrowby^Eustace", "third"),
    ("LID-PLANT-9962F", "Thistlewaite^Philippa", "late"),
]
REGISTERED_BATCHES = ("first", "second", "third")
NOT_CONSENTING = "LID-PLANT-8851E"
UNREGISTERED = "LID-PLANT-9962F"
WEIGHTS = [np.arange(4, dtype=np.float32)]


@dataclass(frozen=True)
class Lineage:
    node: Node
    study_id: int
    keys: dict[str, LocalAccount]  # local id -> patient key
    datasets: dict[str, int]  # batch -> chain dataset id


def _write(folder: Path, local_id: str, name: str, index: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = local_id, name
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / f"{index}.dcm")


@pytest.fixture(scope="module")
def lineage(module_make_node, module_exchange, actors, tmp_path_factory: pytest.TempPathFactory) -> Lineage:  # type: ignore[no-untyped-def]
    node = module_make_node("Lineage Hospital")
    root = tmp_path_factory.mktemp("lineage")
    for index, (local_id, name, batch) in enumerate(RECORDS):
        _write(root / batch, local_id, name, index)
    datasets = {}
    for batch in (*REGISTERED_BATCHES, "late"):
        Ingestor(node, workers=1).run([root / batch])
        if batch in REGISTERED_BATCHES:
            (registered,) = register_drafts(node)
            assert registered.chain_dataset_id is not None
            datasets[batch] = registered.chain_dataset_id
    keys = {}
    for local_id in dict.fromkeys(r[0] for r in RECORDS):
        keys[local_id] = key = Account.create()
        enrol(node, local_id, key.address,
              key.sign_message(encode_defunct(text=issue_challenge(node, local_id).text)).signature.hex())
        if local_id != NOT_CONSENTING:
            consent = module_exchange.consent
            consent.relay(actors.coordinator, consent.sign_grant(key, Scope(purpose=Purpose.GRU), Kind.IMAGE,
                                                                 NO_EXPIRY))
    studies = module_exchange.studies
    study_id, _ = studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.IMAGE, hospitals=(node.address,), task_code_hash=keccak(b"lineage task"),
        rounds=2))
    studies.approve(node.account, study_id)
    studies.start(actors.coordinator, study_id)
    return Lineage(node, int(study_id), keys, datasets)


@pytest.fixture(autouse=True)
def no_kept_cohorts(request: pytest.FixtureRequest) -> None:
    """Start each test with no kept cohort: study ids and rounds come back when the chain is reverted."""
    if "lineage" in request.fixturenames:
        shutil.rmtree(request.getfixturevalue("lineage").node.dir / "cohorts", ignore_errors=True)


def _cohort(lineage: Lineage):  # type: ignore[no-untyped-def]
    return build_cohort(lineage.node, lineage.study_id, lineage.node.exchange.chain.block_number)


def _manifest(lineage: Lineage) -> dict:  # type: ignore[type-arg]
    return cohort_manifest(lineage.node, _cohort(lineage), 1)


# ---------------------------------------------------------------------- registered datasets only


def test_a_record_in_no_registered_dataset_never_enters_a_cohort(lineage: Lineage) -> None:
    cohort = _cohort(lineage)
    assert {m.patient for m in cohort.members} == {
        key.address for local_id, key in lineage.keys.items() if local_id not in (NOT_CONSENTING, UNREGISTERED)}
    assert lineage.keys[UNREGISTERED].address not in {m.patient for m in cohort.members}
    assert cohort.count == 5  # D's two records, A's, B's and C's
    assert cohort.unregistered == 1  # F's: enrolled and consenting, but in no registered dataset


def test_each_member_names_the_dataset_that_holds_it(lineage: Lineage) -> None:
    cohort = _cohort(lineage)
    with lineage.node.sessions() as session:
        holder = dict(session.execute(
            select(DatasetRecord.record_id, Dataset.chain_dataset_id)
            .join(Dataset, Dataset.id == DatasetRecord.dataset_id)).all())
    assert {m.record_id: m.dataset_id for m in cohort.members} == {m.record_id: holder[m.record_id]
                                                                   for m in cohort.members}
    assert cohort.dataset_ids == (lineage.datasets["first"], lineage.datasets["second"])


def test_a_dataset_counts_from_the_block_it_was_registered_in(make_node, exchange, actors, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = make_node("Late Hospital")
    _write(tmp_path / "in", "LID-LATE-0001", "Late^One", 0)
    Ingestor(node, workers=1).run([tmp_path / "in"])
    key = Account.create()
    enrol(node, "LID-LATE-0001", key.address,
          key.sign_message(encode_defunct(text=issue_challenge(node, "LID-LATE-0001").text)).signature.hex())
    exchange.consent.relay(actors.coordinator, exchange.consent.sign_grant(
        key, Scope(purpose=Purpose.GRU), Kind.IMAGE, NO_EXPIRY))
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.IMAGE, hospitals=(node.address,), task_code_hash=keccak(b"late"), rounds=1))
    before = exchange.chain.block_number
    (dataset,) = register_drafts(node)
    assert build_cohort(node, study_id, before).count == 0  # a cohort of the past stays what it was
    after = build_cohort(node, study_id, exchange.chain.block_number)
    assert [(m.patient, m.dataset_id) for m in after.members] == [(key.address, dataset.chain_dataset_id)]


# ---------------------------------------------------------------------- the contribution


def test_the_contribution_names_the_cohort_block_and_exactly_its_members_datasets(lineage: Lineage, exchange) -> None:  # type: ignore[no-untyped-def]
    cohort = _cohort(lineage)
    mine(exchange.chain.rpc_url, 2)  # the chain moves on while the node trains
    anchored = anchor_contribution(lineage.node, cohort, 1, WEIGHTS)
    event = exchange.studies.contribution_of(lineage.study_id, 1, lineage.node.address)
    assert event.tx_hash == anchored.tx_hash
    assert event.cohort_block == cohort.block == event.block_number - 3  # the block read, not a later one
    assert event.dataset_ids == (lineage.datasets["first"], lineage.datasets["second"])
    assert lineage.datasets["third"] not in event.dataset_ids  # E's dataset: registered, but nobody of it consents
    assert (event.cohort_root, event.cohort_count) == (cohort.root, 5)


# ---------------------------------------------------------------------- the manifest


def test_the_manifest_states_the_round_as_anchored(lineage: Lineage, exchange) -> None:  # type: ignore[no-untyped-def]
    cohort = _cohort(lineage)
    anchored = anchor_contribution(lineage.node, cohort, 1, WEIGHTS)
    assert anchored.manifest is not None
    manifest = json.loads(anchored.manifest)
    event = exchange.studies.contribution_of(lineage.study_id, 1, lineage.node.address)
    assert {k: v for k, v in manifest.items() if k not in ("members", "enrolments")} == {
        "format": "metai-cohort/1", "chain_id": exchange.chain.chain_id,
        "study_registry": exchange.studies.address, "study_id": lineage.study_id, "round": 1,
        "hospital": lineage.node.address, "cohort_block": event.cohort_block,
        "cohort_root": "0x" + event.cohort_root.hex(), "dataset_ids": list(event.dataset_ids)}


def test_every_member_is_proven_in_its_dataset_on_chain_and_the_members_rebuild_the_root(lineage: Lineage,  # type: ignore[no-untyped-def]
                                                                                        exchange) -> None:
    manifest = _manifest(lineage)
    members = manifest["members"]
    assert [m["record_id"] for m in members] == sorted(m["record_id"] for m in members)
    assert len(members) == 5
    for m in members:
        assert m["dataset_id"] in manifest["dataset_ids"]
        proof = [bytes.fromhex(p.removeprefix("0x")) for p in m["dataset_proof"]]
        assert exchange.datasets.contains_record(m["dataset_id"], record_leaf(m["record_id"], m["kind"]), proof)
    # The test's own Merkle tree over the members' cohort leaves gives the anchored root.
    leaves = [reference_leaf(["bytes32", "uint8", "address"], [bytes.fromhex(m["record_id"]), m["kind"], m["patient"]])
              for m in members]
    assert "0x" + reference_root(leaves).hex() == manifest["cohort_root"]


def test_a_proof_in_another_dataset_is_refused_on_chain(lineage: Lineage, exchange) -> None:  # type: ignore[no-untyped-def]
    """The proofs are checked against their own dataset's root: the check above is not vacuous."""
    member = _manifest(lineage)["members"][0]
    other = next(d for d in lineage.datasets.values() if d != member["dataset_id"])
    proof = [bytes.fromhex(p.removeprefix("0x")) for p in member["dataset_proof"]]
    assert not exchange.datasets.contains_record(other, record_leaf(member["record_id"], member["kind"]), proof)


def test_every_enrolment_is_signed_by_its_patient_over_a_text_naming_this_hospital(lineage: Lineage) -> None:
    manifest = _manifest(lineage)
    enrolments = manifest["enrolments"]
    assert [e["patient"] for e in enrolments] == sorted({m["patient"] for m in manifest["members"]})
    for e in enrolments:
        signer = Account.recover_message(encode_defunct(text=e["challenge"]), signature=e["signature"])
        assert signer == e["patient"]
        assert f"Hospital: Lineage Hospital ({lineage.node.address})" in e["challenge"].splitlines()


def test_the_manifest_names_nothing_else_about_a_patient(lineage: Lineage) -> None:
    text = manifest_json(_manifest(lineage))
    with lineage.node.sessions() as session:
        pseudonyms = session.scalars(select(Patient.pseudonym)).all()
        rows = session.execute(select(Record.path, Record.label, Record.study_uid, Record.series_uid)).all()
    planted = {r[0] for r in RECORDS} | {part for r in RECORDS for part in r[1].split("^")} | set(pseudonyms)
    planted |= {value for row in rows for value in row if value}
    assert len(pseudonyms) == 6
    found = sorted(marker for marker in planted if marker in text)
    assert found == []


def test_the_command_writes_the_manifest_sent_with_the_round(lineage: Lineage, exchange, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    anchored = anchor_contribution(lineage.node, _cohort(lineage), 1, WEIGHTS)
    env = {"METAI_NODE_DIR": str(lineage.node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
           "METAI_NODE_RPC_URL": lineage.node.rpc_url}
    out = tmp_path / "manifest.json"
    args = ["cohort-manifest", "--study", str(lineage.study_id), "--round", "1"]
    written = CliRunner().invoke(app, [*args, "--out", str(out)], env=env, catch_exceptions=False)
    assert written.exit_code == 0, written.output
    assert out.read_text(encoding="utf-8") == anchored.manifest
    printed = CliRunner().invoke(app, args, env=env, catch_exceptions=False)
    assert printed.stdout == f"{anchored.manifest}\n"
    # Kept as sent: a patient enrolling again (a new signed challenge) does not change what the command gives,
    # which is what a sealed node's hash covers.
    assert anchored.manifest is not None
    assert read_sent_manifest(lineage.node.dir, lineage.study_id, 1) == anchored.manifest


def test_the_command_names_a_round_never_kept(lineage: Lineage) -> None:
    env = {"METAI_NODE_DIR": str(lineage.node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
           "METAI_NODE_RPC_URL": lineage.node.rpc_url}
    result = CliRunner().invoke(app, ["cohort-manifest", "--study", str(lineage.study_id), "--round", "2"], env=env)
    assert result.exit_code == 1
    assert f"no cohort was kept for round 2 of study {lineage.study_id}" in result.stderr
