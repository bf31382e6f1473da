"""`metai-node` end to end through its command line: init, ingest, register, verify, PACS import."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from contracts.manifest import write_manifest
from contracts.roles import Role
from node.cli import app
from node.pacs import OrthancClient

PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def env(tmp_path: Path, exchange, actors, chain) -> dict[str, str]:  # type: ignore[no-untyped-def]
    manifest = tmp_path / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    return {"METAI_NODE_DIR": str(tmp_path / "node"), "METAI_NODE_PASSPHRASE": PASSPHRASE,
            "METAI_NODE_RPC_URL": chain.rpc_url, "MANIFEST": str(manifest)}


def run(env: dict[str, str], *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def init_node(env, exchange, actors, chain) -> str:  # type: ignore[no-untyped-def]
    result = run(env, "init", "--name", "CLI Hospital", "--manifest", env["MANIFEST"], "--rpc-url", chain.rpc_url)
    assert result.exit_code == 0, result.output
    address = result.output.split("hospital address ")[1].split()[0]
    chain.send_value(actors.admin, address, 10**18)
    exchange.roles.grant(actors.admin, Role.HOSPITAL, address)
    return address


def test_init_ingest_register_verify(env, exchange, actors, chain, tmp_path: Path) -> None:
    address = init_node(env, exchange, actors, chain)
    (tmp_path / "in").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "in")
    (tmp_path / "in" / "junk.bin").write_bytes(b"junk")
    result = run(env, "ingest", str(tmp_path / "in"))
    assert result.exit_code == 2, result.output  # partial: one file quarantined
    assert "ingested 1, already present 0, quarantined 1" in result.output
    assert "junk.bin" in result.output
    assert "image-CT-v1" in run(env, "datasets").output
    result = run(env, "register", "image-CT-v1")
    assert result.exit_code == 0, result.output
    assert "chain dataset 1, 1 records" in result.output
    assert exchange.datasets.dataset(1).hospital == address
    assert run(env, "verify").exit_code == 0
    record_id = next((Path(env["METAI_NODE_DIR"]) / "store").rglob("*.dcm")).stem
    proof = run(env, "proof", "image-CT-v1", record_id)
    assert proof.exit_code == 0, proof.output
    assert "chain dataset 1 accepts this proof: True" in proof.output
    status = run(env, "status").output
    assert "HOSPITAL role held" in status
    assert "IMAGE: 1" in status


def test_wrong_passphrase_is_refused(env, exchange, actors, chain, tmp_path: Path) -> None:
    init_node(env, exchange, actors, chain)
    (tmp_path / "in").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "in")
    result = run({**env, "METAI_NODE_PASSPHRASE": "a wrong passphrase"}, "ingest", str(tmp_path / "in"))
    assert result.exit_code == 1
    assert "wrong passphrase" in result.output


def test_approve_records_the_decision(env, exchange, actors, chain) -> None:
    from eth_utils.crypto import keccak

    from contracts.datause import Kind, Purpose
    from contracts.studies import Decision, StudyRequest

    address = init_node(env, exchange, actors, chain)
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.IMAGE, hospitals=(address,), task_code_hash=keccak(b"t"), rounds=1))
    result = run(env, "approve", str(study_id), "--yes")
    assert result.exit_code == 0, result.output
    assert exchange.studies.decision_of(study_id, address) == Decision.APPROVED


def test_import_pacs_pulls_and_ingests(env, exchange, actors, chain, orthanc) -> None:  # type: ignore[no-untyped-def]
    init_node(env, exchange, actors, chain)
    import pydicom

    client = OrthancClient(orthanc.url, orthanc.username, orthanc.password)
    selection: list[str] = []
    for name in ("CT_small.dcm", "MR_small.dcm"):
        client.upload(Path(get_testdata_file(name)).read_bytes())
        selection += ["--study", str(pydicom.dcmread(get_testdata_file(name)).StudyInstanceUID)]
    pacs_env = {**env, "METAI_NODE_PACS_URL": orthanc.url, "METAI_NODE_PACS_USER": orthanc.username,
                "METAI_NODE_PACS_PASSWORD": orthanc.password}
    result = run(pacs_env, "import-pacs", *selection)  # the session's Orthanc also holds other tests' studies
    assert result.exit_code == 0, result.output
    assert "ingested 2, already present 0, quarantined 0" in result.output
    again = run(pacs_env, "import-pacs", *selection)
    assert "already present 2" in again.output
