"""The node directory is 0700 and everything in it 0700 (folders) / 0600 (files), whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.ingest import Ingestor
from node.node import Node
from tests.conftest import NODE_PASSPHRASE
from tests.node.ingest_corpus import dicom_bytes, write_kspace, write_sinogram


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def _loose(node_dir: Path) -> list[str]:
    found = []
    for path in [node_dir, *node_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        expected = 0o700 if path.is_dir() else 0o600
        if mode != expected:
            found.append(f"{path.relative_to(node_dir.parent)} {oct(mode)}")
    return found


def _inputs(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ct.dcm").write_bytes(dicom_bytes(patient="PERM-1", instance=1))
    write_sinogram(folder / "sino.h5", "PERM-2")
    write_kspace(folder / "knee.h5", "PERM-3")
    (folder / "bad.dcm").write_bytes(b"not an image")
    return folder


def test_everything_the_node_writes_is_private(umask: int, make_node, tmp_path: Path) -> None:
    node = make_node("Private", role=False)
    report = Ingestor(node).run([_inputs(tmp_path / "in")])
    assert len(report.ingested) == 3
    assert len(report.quarantined) == 1
    names = {p.name for p in node.dir.iterdir()}
    assert {"catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm", "store", "quarantine", "tmp",
            "ingest.lock", "node.json", "deployment.json", "secrets.json", "hospital-key.json"} <= names
    assert _loose(node.dir) == []


def test_an_existing_node_is_tightened_when_opened(umask: int, make_node, tmp_path: Path) -> None:
    node = make_node("Loose", role=False)
    Ingestor(node).run([_inputs(tmp_path / "in")])
    for path in [node.dir, *node.dir.rglob("*")]:  # as an older version left it
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert _loose(node.dir) != []
    Node(node.dir, NODE_PASSPHRASE)
    assert _loose(node.dir) == []
