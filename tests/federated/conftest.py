"""Fixtures of the federated tests: hospital nodes holding task data, and a running study."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.studies import StudyRequest
from node.enrol import enrol, issue_challenge
from node.ingest import Ingestor, read_sidecar
from node.node import Node

TASK = "ct-sinogram-lesion-v1"


@dataclass
class Hospital:
    node: Node
    patients: dict[str, LocalAccount]  # local id -> key


def populate(node: Node, folder: Path, prefix: str, n: int, seed: int) -> dict[str, LocalAccount]:
    """Write n synthetic records of TASK for n patients, ingest, enrol; return the patients' keys."""
    from tasks import get_task

    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    written = get_task(TASK).write_synthetic_records(folder, n, seed, ids)
    sidecar = folder.parent / f"{prefix}-labels.csv"
    sidecar.write_text("file,label\n" + "".join(f"{p.name},{'lesion' if y else 'normal'}\n" for p, y in written))
    report = Ingestor(node, sidecar=read_sidecar(sidecar)).run([folder])
    assert len(report.ingested) == n, report.quarantined
    keys = {}
    for pid in ids:
        keys[pid] = Account.create()
        text = issue_challenge(node, pid).text
        enrol(node, pid, keys[pid].address, keys[pid].sign_message(encode_defunct(text=text)).signature.hex())
    return keys


@pytest.fixture
def hospitals(make_node, tmp_path: Path, exchange, actors) -> list[Hospital]:  # type: ignore[no-untyped-def]
    out = []
    for index, name in enumerate(("Alpha Hospital", "Beta Hospital")):
        node = make_node(name)
        keys = populate(node, tmp_path / f"data-{index}", f"TEST-{'AB'[index]}", 12, seed=index * 1000)
        for key in keys.values():
            exchange.consent.relay(actors.coordinator, exchange.consent.sign_grant(
                key, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY))
        out.append(Hospital(node, keys))
    return out


@pytest.fixture
def study(exchange, actors, hospitals) -> int:  # type: ignore[no-untyped-def]
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(h.node.address for h in hospitals),
        task_code_hash=task_code_hash(TASK), rounds=3))
    for h in hospitals:
        exchange.studies.approve(h.node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return study_id
