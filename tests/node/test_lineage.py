"""A node trains only on records it registered, and its contribution says which datasets and which block.

One node holds images of six patients, ingested in four batches: the first three each registered
as a dataset as soon as they were ingested, the last never. Every patient enrolled; all but one
consent to any use of their images. Patient D has a record in each of the first two datasets;
patient E, the one who does not consent, is alone in the third; patient F consents but their
record is in no registered dataset.
"""

from __future__ import annotations

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

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.studies import StudyRequest
from deploy.anvil import mine
from node.catalog import Dataset, DatasetRecord
from node.cohort import build_cohort
from node.datasets import register_drafts
from node.enrol import enrol, issue_challenge
from node.ingest import Ingestor
from node.node import Node
from node.training import anchor_contribution

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
