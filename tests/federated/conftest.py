"""Fixtures of the federated tests: hospital nodes holding task data, a running study, and a
way to run it on the Flower deployment engine."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.manifest import write_manifest
from contracts.studies import StudyRequest
from deploy.federation import NodeSpec
from deploy.flower import (
    RunResult,
    SuperNodeProcess,
    run_app,
    start_superlink,
    start_supernode,
    stop,
    write_federation_config,
)
from node.datasets import register_drafts
from node.enrol import enrol, issue_challenge
from node.ingest import Ingestor, read_sidecar
from node.node import Node
from tests.conftest import NODE_PASSPHRASE, light_keystore

TASK = "ct-sinogram-lesion-v1"
COORDINATOR_PASSPHRASE = "coordinator passphrase for tests"
#: The run config the studies here share. The model card's robustness table is evaluated on 4
#: virtual patients per cell (the least it takes) instead of the default 24, which costs about
#: 30 s per study: no test here reads the table; tests/deploy/test_demo.py (default size) and
#: tests/coordinator/test_model_card.py check it.
STUDY_CONFIG: dict[str, object] = {"task": TASK, "min-nodes": 2, "local-epochs": 1, "eval-examples": 32,
                                   "robustness-patients-per-cell": 4}


@dataclass
class Hospital:
    node: Node
    patients: dict[str, LocalAccount]  # local id -> key


def populate(node: Node, folder: Path, prefix: str, n: int, seed: int, *, register: bool = True
             ) -> dict[str, LocalAccount]:
    """Write n synthetic records of TASK for n patients, ingest, enrol; return the patients' keys.

    The records are registered on chain as the node's dataset (a node trains only on records of a
    dataset it registered) unless ``register`` is false (the caller registers them its own way).
    """
    from tasks import get_task

    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    written = get_task(TASK).write_synthetic_records(folder, n, seed, ids)
    sidecar = folder.parent / f"{prefix}-labels.csv"
    sidecar.write_text("file,label\n" + "".join(f"{p.name},{'lesion' if y else 'normal'}\n" for p, y in written))
    report = Ingestor(node, sidecar=read_sidecar(sidecar)).run([folder])
    assert len(report.ingested) == n, report.quarantined
    if register:
        register_drafts(node)
    keys = {}
    for pid in ids:
        keys[pid] = Account.create()
        text = issue_challenge(node, pid).text
        enrol(node, pid, keys[pid].address, keys[pid].sign_message(encode_defunct(text=text)).signature.hex())
    return keys


@pytest.fixture(scope="module")
def hospitals(module_make_node, tmp_path_factory: pytest.TempPathFactory, module_exchange,  # type: ignore[no-untyped-def]
              actors) -> list[Hospital]:
    """Two nodes holding 12 ingested, enrolled, consenting patients each, built once per module.

    Module scope: building them takes seconds, and no test changes what they hold on their own disk
    in a way another test reads (a round's kept cohort is rewritten by the next round of the same id);
    what a test changes on the chain is undone after it by the ``exchange`` fixture it also takes.
    """
    out = []
    data = tmp_path_factory.mktemp("hospital-data")
    for index, name in enumerate(("Alpha Hospital", "Beta Hospital")):
        node = module_make_node(name)
        keys = populate(node, data / f"data-{index}", f"TEST-{'AB'[index]}", 12, seed=index * 1000)
        for key in keys.values():
            module_exchange.consent.relay(actors.coordinator, module_exchange.consent.sign_grant(
                key, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY))
        out.append(Hospital(node, keys))
    return out


def running_study(exchange, actors, hospitals: list[Hospital], rounds: int,  # type: ignore[no-untyped-def]
                  privacy_budget: int = 0, *, start: bool = True) -> int:
    """A study of TASK across ``hospitals``: requested, approved by each, and (``start``) started."""
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(h.node.address for h in hospitals),
        task_code_hash=task_code_hash(TASK), rounds=rounds, privacy_budget=privacy_budget))
    for h in hospitals:
        exchange.studies.approve(h.node.account, study_id)
    if start:
        exchange.studies.start(actors.coordinator, study_id)
    return int(study_id)


@pytest.fixture
def study(exchange, actors, hospitals) -> int:  # type: ignore[no-untyped-def]
    return running_study(exchange, actors, hospitals, rounds=3)


def write_coordinator_env(folder: Path, exchange, actors) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Write the coordinator's keystore and manifest into ``folder``; return its settings (models in
    folder/models) as environment variables."""
    key_file = folder / "coordinator-key.json"
    key_file.write_text(light_keystore(actors.coordinator.key, COORDINATOR_PASSPHRASE))
    manifest = folder / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    values = {"RPC_URL": exchange.chain.rpc_url, "MANIFEST": str(manifest), "KEY_FILE": str(key_file),
              "PASSPHRASE": COORDINATOR_PASSPHRASE, "MODEL_DIR": str(folder / "models")}
    return {f"METAI_COORDINATOR_{name}": value for name, value in values.items()}


@pytest.fixture
def coordinator_env(tmp_path: Path, exchange, actors) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The coordinator's settings (keystore, manifest, models in tmp_path/models) as environment variables."""
    return write_coordinator_env(tmp_path, exchange, actors)


def specs_of(hospitals: list[Hospital], folder: Path) -> list[NodeSpec]:
    """Each hospital's node directory with a passphrase file (mode 0600) written into ``folder``."""
    specs = []
    for h in hospitals:
        secret = folder / f"{h.node.address}.passphrase"
        secret.write_text(NODE_PASSPHRASE)
        secret.chmod(0o600)
        specs.append(NodeSpec(h.node.dir, secret))
    return specs


@pytest.fixture
def node_specs(tmp_path: Path, hospitals) -> list[NodeSpec]:  # type: ignore[no-untyped-def]
    """Each hospital's node directory with a passphrase file (mode 0600)."""
    return specs_of(hospitals, tmp_path)


class FlowerRun:
    """Runs the app on the module's SuperLink + one SuperNode per hospital (``supernodes``, in the
    hospitals' order); ``models`` is where the ServerApp writes (the coordinator's
    METAI_COORDINATOR_MODEL_DIR)."""

    def __init__(self, flwr_home: Path, models: Path, supernodes: list[SuperNodeProcess]) -> None:
        self.flwr_home = flwr_home
        self.models = models
        self.supernodes = supernodes

    def __call__(self, run_config: Mapping[str, object]) -> RunResult:
        return run_app(REPO, flwr_home=self.flwr_home, federation="metai", timeout=600,
                       run_config=run_config)  # type: ignore[arg-type]


REPO = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(scope="module")
def module_federation(tmp_path_factory: pytest.TempPathFactory, hospitals, module_exchange,  # type: ignore[no-untyped-def]
                      actors) -> Iterator[FlowerRun]:
    """A SuperLink + one SuperNode per hospital (plain HTTP, no signing agents, so the ClientApp
    unlocks the key itself, once per worker), started once for the module: the studies its tests
    run one after the other are runs on the same federation, and the same ClientApp workers, as in
    a deployment."""
    root = tmp_path_factory.mktemp("federation")
    superlink = start_superlink(root / "superlink", extra_env=write_coordinator_env(root, module_exchange, actors))
    supernodes = []
    try:
        write_federation_config(superlink.flwr_home, "metai", superlink, None)
        for h in hospitals:
            secret = h.node.dir / "passphrase"
            secret.write_text(NODE_PASSPHRASE)
            config = {"node-dir": str(h.node.dir), "passphrase-file": str(secret)}
            supernodes.append(start_supernode(root / f"sn-{h.node.address[:8]}", superlink,
                                              h.node.address[2:10], node_config=config))
        yield FlowerRun(superlink.flwr_home, root / "models", supernodes)
    finally:
        for process in supernodes:
            stop(process)
        stop(superlink)


@pytest.fixture
def flower_run(tmp_path: Path, module_federation: FlowerRun, exchange) -> Iterator[FlowerRun]:  # type: ignore[no-untyped-def]
    """The module's federation, its model folder empty at the start of the test.

    The chain is put back after each test (``exchange``), so the next test's first study has the
    same id again: the models a test's runs wrote are moved to its tmp_path/models afterwards.
    """
    assert not module_federation.models.exists(), "models of an earlier test were left in the shared folder"
    yield module_federation
    if module_federation.models.exists():
        shutil.move(module_federation.models, tmp_path / "models")
