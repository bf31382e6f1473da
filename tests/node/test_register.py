"""Dataset registration on Anvil, record proofs, and verification against disk and chain."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from contracts.datause import Kind
from node.datasets import list_datasets, record_proof, register, verify
from node.errors import DatasetError
from node.ingest import Ingestor


@pytest.fixture
def node(make_node, tmp_path: Path):  # type: ignore[no-untyped-def]
    n = make_node()
    (tmp_path / "in").mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copy(get_testdata_file(name), tmp_path / "in")
    Ingestor(n).run([tmp_path / "in"])
    return n


def test_drafts_group_records_by_kind_and_modality(node) -> None:
    names = {v.name: v.record_count for v in list_datasets(node)}
    assert names == {"image-CT-v1": 1, "image-MR-v1": 1}


def test_register_anchors_root_and_count(node) -> None:
    dataset = register(node, "image-CT-v1")
    on_chain = node.exchange.datasets.dataset(dataset.chain_dataset_id)
    assert on_chain.merkle_root.hex() == dataset.merkle_root
    assert (on_chain.record_count, on_chain.kinds, on_chain.modality, on_chain.hospital) == (
        1, Kind.IMAGE, "CT", node.address)
    assert verify(node) == []


def test_record_proof_verifies_on_chain(node) -> None:
    dataset = register(node, "image-CT-v1")
    with node.sessions() as s:
        from sqlalchemy import select

        from node.catalog import Record

        record_id = s.scalar(select(Record.record_id).where(Record.modality == "CT"))
    leaf, proof = record_proof(node, "image-CT-v1", record_id)
    assert node.exchange.datasets.contains_record(dataset.chain_dataset_id, leaf, proof)


def test_verify_names_a_modified_file(node) -> None:
    register(node, "image-CT-v1")
    register(node, "image-MR-v1")
    with node.sessions() as s:
        from sqlalchemy import select

        from node.catalog import Record

        ct = s.scalar(select(Record).where(Record.modality == "CT"))
    path = node.dir / ct.path
    path.write_bytes(path.read_bytes() + b"tampered")
    problems = verify(node)
    assert problems == [f"dataset image-CT-v1: record {ct.record_id} was modified on disk ({ct.path})"]


def test_verify_names_a_missing_file(node) -> None:
    register(node, "image-CT-v1")
    with node.sessions() as s:
        from sqlalchemy import select

        from node.catalog import Record

        ct = s.scalar(select(Record).where(Record.modality == "CT"))
    (node.dir / ct.path).unlink()
    assert verify(node) == [f"dataset image-CT-v1: record {ct.record_id} is missing from disk ({ct.path})"]


def test_unknown_draft_is_refused(node) -> None:
    with pytest.raises(DatasetError, match="no draft dataset named nope; drafts: image-CT-v1, image-MR-v1"):
        register(node, "nope")


def test_registration_without_role_leaves_no_local_record(make_node, tmp_path: Path) -> None:
    from contracts.errors import ContractRevert

    node = make_node("No Role Hospital", role=False)
    (tmp_path / "in2").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "in2")
    Ingestor(node).run([tmp_path / "in2"])
    with pytest.raises(ContractRevert, match="AccessControlUnauthorizedAccount"):
        register(node, "image-CT-v1")
    assert [v.chain_dataset_id for v in list_datasets(node)] == [None]
