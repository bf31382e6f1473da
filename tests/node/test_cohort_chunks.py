"""The cohort is exactly the consenting patients' records wherever the consent chunks split them.

A node asks the consent registry about its enrolled patients in chunks (here 3 per call, so 8
patients make chunks 0-2 | 3-5 | 6-7, the last partial). Each scenario below is a study for its
own disease code with its own consents; the expected cohort is derived from the scenario by the
test, and its root by the test's own Merkle tree (tests/contracts/merkle_reference.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

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
from deploy.anvil import advance_time
from node.catalog import Record
from node.cohort import build_cohort
from node.datasets import register_drafts
from node.enrol import enrol, issue_challenge
from node.ingest import Ingestor
from node.node import Node
from tests.contracts.merkle_reference import reference_leaf, reference_root
from tests.node.ingest_corpus import write_kspace

CHUNK = 3
KSPACE_AT = (1, 6)
KSPACE_STUDY = "k-space records only"
SHORT_EXPIRY = 300  # seconds; the clock then moves past it
# Per position in the node's address order: G consent in force for this study's disease,
# R granted then revoked, E granted with a short expiry that has passed, H granted for another
# hospital only, K granted for another kind only, . nothing.
SCENARIOS = {
    "later chunks only": "...GG.GG",
    "at the boundary (2 and 3)": "..GG....",
    "at the second boundary (5 and 6)": ".....GG.",
    "last partial chunk only": "......GG",
    "none": "........",
    "all": "GGGGGGGG",
    "revoked, expired and granted mixed": "RGEGREGR",
    "expired, revoked and granted mixed": "ERGERGRE",
    "revoked and expired at the boundaries": "GERREEEG",
    "other hospital or kind in later chunks": "GG.HKHKG",
    **{f"only position {k}": "." * k + "G" + "." * (7 - k) for k in range(8)},
}


@dataclass(frozen=True)
class Setup:
    """A node with 8 enrolled patients (by address order) and one that never enrolled."""

    node: Node
    keys: list[LocalAccount]  # keys[i] is the patient at position i
    records: list[dict[str, int]]  # records[i]: record id -> kind, of the patient at position i
    studies: dict[str, int]
    block: int


def _dicom(folder: Path, patient_id: str, copy: int) -> None:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientID, ds.PatientName = patient_id, f"Synthetic^{patient_id}"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / f"{patient_id}-{copy}.dcm")


def _sign(key: LocalAccount, text: str) -> str:
    return "0x" + key.sign_message(encode_defunct(text=text)).signature.hex().removeprefix("0x")


@pytest.fixture
def setup(make_node, exchange, actors, anvil, tmp_path: Path, now: int) -> Setup:
    node = make_node()
    folder = tmp_path / "in"
    folder.mkdir()
    pids = [f"MARK-{i:04d}-CHK" for i in range(8)]
    for pid in pids:
        _dicom(folder, pid, 0)
    _dicom(folder, pids[4], 1)  # the patient at position 4 has two records
    _dicom(folder, "MARK-0099-UNE", 0)  # never enrolled
    for i in KSPACE_AT:  # these patients also have an MR k-space record
        write_kspace(folder / f"{pids[i]}-kspace.h5", pids[i], seed=i)
    Ingestor(node).run([folder])
    register_drafts(node)
    # Patient i gets the i-th smallest address, so positions below are positions in the order
    # the node asks the registry about its patients.
    keys = sorted((Account.create() for _ in pids), key=lambda k: int(k.address, 16))
    records = []
    for pid, key in zip(pids, keys, strict=True):
        pseudonym = enrol(node, pid, key.address, _sign(key, issue_challenge(node, pid).text))
        with node.sessions() as session:
            records.append(dict(session.execute(select(Record.record_id, Record.kind)
                                                .where(Record.patient_pseudonym == pseudonym)).all()))
    assert [sorted(r.values()) for r in records] == [[1], [1, 4], [1], [1], [1, 1], [1], [1, 4], [1]]
    c, relay = exchange.consent, actors.coordinator
    # The patient who never enrolled consents to every use (general research covers the
    # disease-specific studies below), but the node cannot know their address.
    c.relay(relay, c.sign_grant(Account.create(), Scope(purpose=Purpose.GRU), Kind.IMAGE, NO_EXPIRY))
    studies = {}
    for disease, (name, states) in enumerate(SCENARIOS.items(), start=1):
        study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
            purpose=Purpose.DS, disease=disease, kinds=Kind.IMAGE, hospitals=(node.address,),
            task_code_hash=keccak(text=name), rounds=1))
        exchange.studies.approve(node.account, study_id)
        studies[name] = study_id
        scope = Scope(purpose=Purpose.DS, disease=disease)
        for key, state in zip(keys, states, strict=True):
            if state in "GRE":
                expiry = now + SHORT_EXPIRY if state == "E" else NO_EXPIRY
                c.relay(relay, c.sign_grant(key, scope, Kind.IMAGE, expiry))
            if state == "R":
                c.relay(relay, c.sign_revoke(key, scope))
            if state == "H":
                other = Scope(hospital=actors.hospital2.address, purpose=Purpose.DS, disease=disease)
                c.relay(relay, c.sign_grant(key, other, Kind.IMAGE, NO_EXPIRY))
            if state == "K":
                c.relay(relay, c.sign_grant(key, scope, Kind.CT_SINOGRAM | Kind.MR_KSPACE, NO_EXPIRY))
    # A study of kinds that come after IMAGE, of which the first (CT sinograms) the node has
    # none: every patient consents to every kind, so the k-space records alone are the cohort.
    disease = len(SCENARIOS) + 1
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.DS, disease=disease, kinds=Kind.CT_SINOGRAM | Kind.MR_KSPACE, hospitals=(node.address,),
        task_code_hash=keccak(text="k-space"), rounds=1))
    studies[KSPACE_STUDY] = study_id
    for key in keys:
        c.relay(relay, c.sign_grant(key, Scope(purpose=Purpose.DS, disease=disease),
                                    Kind.IMAGE | Kind.CT_SINOGRAM | Kind.MR_KSPACE, NO_EXPIRY))
    advance_time(anvil.rpc_url, 2 * SHORT_EXPIRY)
    return Setup(node, keys, records, studies, exchange.chain.block_number)


def _expected(setup: Setup, states: str) -> tuple[set[str], set[str], bytes]:
    positions = [i for i, s in enumerate(states) if s == "G"]
    ids = {rid for i in positions for rid, kind in setup.records[i].items() if kind == Kind.IMAGE}
    patients = {setup.keys[i].address for i in positions}
    leaves = [reference_leaf(["bytes32", "uint8", "address"],
                             [bytes.fromhex(rid), int(Kind.IMAGE), setup.keys[i].address])
              for i in positions for rid in setup.records[i] if rid in ids]
    return ids, patients, reference_root(leaves) if leaves else bytes(32)


def test_cohort_across_consent_chunk_boundaries(setup: Setup) -> None:
    got, want = {}, {}
    for name, states in SCENARIOS.items():
        cohort = build_cohort(setup.node, setup.studies[name], setup.block, chunk=CHUNK)
        got[name] = ({m.record_id for m in cohort.members}, {m.patient for m in cohort.members}, cohort.root,
                     cohort.count)
        ids, patients, root = _expected(setup, states)
        want[name] = (ids, patients, root, len(ids))
    assert got == want
    # Other chunkings move the boundaries; None is the default chunk, one call for all.
    sizes = (1, 2, 4, 8, None)
    got_sizes = {(name, chunk): {m.record_id for m in build_cohort(setup.node, setup.studies[name], setup.block,
                                                                   chunk=chunk).members}
                 for name in SCENARIOS for chunk in sizes}
    assert got_sizes == {(name, chunk): want[name][0] for name in SCENARIOS for chunk in sizes}

    cohort = build_cohort(setup.node, setup.studies["all"], setup.block, chunk=CHUNK)
    owner = {rid: setup.keys[i].address for i, ids in enumerate(setup.records) for rid, kind in ids.items()
             if kind == Kind.IMAGE}
    # Members come in record-id order, each naming its stored file (content-addressed: its
    # sha256 is the record id), its patient, and what the catalog says of a real, unlabelled CT.
    details = [(m.record_id, m.kind, m.patient, m.format, m.label, m.synthetic,
               hashlib.sha256((setup.node.dir / m.path).read_bytes()).hexdigest()) for m in cohort.members]
    assert details == [(rid, int(Kind.IMAGE), owner[rid], "dicom", None, False, rid) for rid in sorted(owner)]
    # Kinds the study does not request are skipped, and so are requested kinds the node has
    # none of, without ending the search for the kinds after them.
    kspace = build_cohort(setup.node, setup.studies[KSPACE_STUDY], setup.block, chunk=CHUNK)
    assert {(m.record_id, m.kind, m.patient, m.format) for m in kspace.members} == {
        (rid, int(Kind.MR_KSPACE), setup.keys[i].address, "ismrmrd")
        for i in KSPACE_AT for rid, kind in setup.records[i].items() if kind == Kind.MR_KSPACE}
