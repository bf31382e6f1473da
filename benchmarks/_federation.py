"""The lab behind benchmarks/federated.py: one chain, hospital nodes, identical studies, and one
Flower deployment per setting.

Everything runs on 127.0.0.1 and offline. The hospitals hold synthetic ``ct-sinogram-lesion-v1``
records, ingested, enrolled and consented exactly as a real node does it (the same steps as
``tests/federated/conftest.py::populate`` and ``deploy/demo/``). Each setting gets a SuperLink
and one SuperNode per hospital of its own, because what is measured is fixed when they start:
the coordinator's anchoring switch and Flower's SuperExec poll interval are read from the
SuperLink's environment (its ServerApp inherits it), the nodes' switch from their node config,
how a SuperNode runs its ClientApp (a resident worker or a process per message) and its waits
from its command line, TLS from the certificates each is started with.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from benchmarks._hosts import Placement, hospital_host
from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.roles import Role
from contracts.studies import StudyRequest
from coordinator.study_log import read_study_log, study_folder
from deploy.anvil import AnvilNode
from deploy.deployer import deploy_contracts
from deploy.flower import (
    FlowerSecurity,
    SuperLinkProcess,
    SuperNodeProcess,
    make_security,
    register_supernodes,
    run_app,
    start_superlink,
    start_supernode,
    stop,
    write_federation_config,
)
from deploy.process import descendants, stop_tree
from deploy.signers import SignerProcess, start_signer, stop_signer
from deploy.threads import threads_per_node
from node.datasets import register_drafts
from node.enrol import enrol, issue_challenge
from node.federated import Pacing
from node.ingest import Ingestor, read_sidecar
from node.node import Node
from node.node_config import NodeConfigKey

REPO_ROOT = Path(__file__).resolve().parent.parent  # the Flower app (pyproject.toml [tool.flwr.app])
TASK = "ct-sinogram-lesion-v1"
NODE_PASSPHRASE = "benchmark node passphrase, local only"
COORDINATOR_PASSPHRASE = "benchmark coordinator passphrase, local only"
SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
_CONNECTION = "bench"
_TICK = os.sysconf("SC_CLK_TCK")
LOOPBACK = Placement()
_RUN_TIMEOUT = 900.0


@dataclass(frozen=True)
class Lab:
    """A chain with the contracts, two hospital nodes holding consented records, and the actors."""

    root: Path
    exchange: Exchange
    manifest: Path
    researcher: LocalAccount
    coordinator: LocalAccount
    coordinator_key_file: Path
    nodes: tuple[Node, ...]
    records: tuple[int, ...]  # consented records per node


@dataclass(frozen=True)
class FlowerSetting:
    """How one run is deployed: anchoring on or off, Flower's polling intervals (seconds), how the
    SuperNodes run their ClientApp, and TLS."""

    name: str
    anchor: bool
    poll_interval: float  # the ServerApp's pull interval (run config ``poll-interval``)
    superexec_poll: float  # FLWR_SUPEREXEC_TASK_POLL_INTERVAL of SuperLink and SuperNodes
    isolation: str = "subprocess"  # "worker": node/federated/'s resident worker; "subprocess": Flower's
    paced: bool = False  # the SuperNodes' waits shortened (node/federated/pacing.py); False: Flower's own
    tls: bool = False  # TLS + SuperNode authentication, as hospitals on other machines connect
    reply_pull_backoff: float = 1.0  # the ServerApp's first wait for a reply object not yet there (Flower's: 1 s)


@dataclass(frozen=True)
class StudyRun:
    """One study run to its end: the coordinator's round log and the times seen from outside."""

    setting: FlowerSetting
    study_id: int
    run_id: int
    wall_seconds: float  # ``flwr run`` submitted -> run finished (end of its log stream)
    deploy_seconds: float  # starting the SuperLink and the SuperNodes
    log: dict[str, Any]  # <model dir>/study-<id>/study.json
    idle_cpu: dict[str, float]  # CPU share (of one CPU) of the deployment's processes waiting: "cold", "active"


def build_lab(root: Path, anvil: AnvilNode, records: Sequence[int], say: Callable[[str], None] = print) -> Lab:
    """Deploy the contracts and make one hospital node per entry of ``records`` (its patient count).

    Every patient has one synthetic record, is enrolled with a key of their own and grants
    consent for general research use of CT sinograms, relayed by the coordinator.
    """
    chain = Chain(anvil.rpc_url)
    admin, researcher, coordinator = (Account.from_key(k) for k in anvil.dev_keys[:3])
    deployment = deploy_contracts(chain, admin, initial_roles=[
        (Role.RESEARCHER, researcher.address), (Role.COORDINATOR, coordinator.address)])
    exchange = Exchange(chain, deployment)
    manifest = root / "deployment.json"
    write_manifest(deployment, manifest)
    key_file = root / "coordinator-key.json"
    key_file.write_text(json.dumps(Account.encrypt(coordinator.key, COORDINATOR_PASSPHRASE)), encoding="utf-8")
    nodes = []
    for index, count in enumerate(records):
        name = f"Hospital {'ABCDEFGH'[index]}"
        node = Node.init(root / f"node-{index}", hospital_name=name, rpc_url=chain.rpc_url, manifest=manifest,
                         passphrase=NODE_PASSPHRASE)
        (node.dir / "passphrase").write_text(NODE_PASSPHRASE, encoding="utf-8")
        chain.send_value(admin, node.address, 10**18)
        exchange.roles.grant(admin, Role.HOSPITAL, node.address)
        started = time.perf_counter()
        _populate(node, exchange, coordinator, root / f"data-{index}", f"BENCH-{'ABCDEFGH'[index]}", count,
                  seed=1000 * index)
        say(f"{name}: {count} records ingested, enrolled and consented in {time.perf_counter() - started:.1f} s")
        nodes.append(node)
    return Lab(root, exchange, manifest, researcher, coordinator, key_file, tuple(nodes), tuple(records))


def _populate(node: Node, exchange: Exchange, relayer: LocalAccount, folder: Path, prefix: str, n: int,
              seed: int) -> None:
    from tasks import get_task, write_labels_csv

    ids = [f"{prefix}-{i:03d}" for i in range(n)]
    written = get_task(TASK).write_synthetic_records(folder, n, seed, ids)
    sidecar = folder.parent / "labels" / f"{folder.name}.csv"  # outside the folder: bare file names
    sidecar.parent.mkdir(exist_ok=True)
    write_labels_csv(sidecar, written)
    report = Ingestor(node, sidecar=read_sidecar(sidecar)).run([folder])
    if len(report.ingested) != n:
        raise RuntimeError(f"{node.info.hospital_name}: {len(report.ingested)} of {n} records ingested; "
                           f"quarantined: {report.quarantined}")
    for pid in ids:
        patient = Account.create()
        text = issue_challenge(node, pid).text
        enrol(node, pid, patient.address, patient.sign_message(encode_defunct(text=text)).signature.hex())
        exchange.consent.relay(relayer, exchange.consent.sign_grant(patient, Scope(purpose=Purpose.GRU),
                                                                    Kind.CT_SINOGRAM, NO_EXPIRY))
    register_drafts(node)  # a node trains only on records in a dataset it registered


def new_study(lab: Lab, rounds: int) -> int:
    """Request, approve (every hospital) and start a study of TASK over ``rounds`` rounds."""
    from tasks import task_code_hash

    studies = lab.exchange.studies
    study_id, _ = studies.request(lab.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(n.address for n in lab.nodes),
        task_code_hash=task_code_hash(TASK), rounds=rounds))
    for node in lab.nodes:
        studies.approve(node.account, study_id)
    studies.start(lab.coordinator, study_id)
    return study_id


def run_study(lab: Lab, setting: FlowerSetting, study_id: int, run_config: Mapping[str, str | int | float],
              idle_seconds: float = 0.0, placement: Placement = LOOPBACK) -> StudyRun:
    """Deploy a SuperLink and one SuperNode per hospital for ``setting``, run the study, stop them all.

    ``idle_seconds``: how long the deployment's CPU use is measured while it waits, once before
    the run (no message yet: "cold") and once after it ("active": the nodes just had messages,
    so paced SuperNodes ask the SuperLink at their short interval). ``placement``: on this
    host's loopback, or the coordinator and each hospital on a host of its own (then ``lab``
    must be built on that placement's chain host, and ``setting`` must use TLS).
    """
    run_dir = lab.root / setting.name
    models = run_dir / "models"
    flag = "true" if setting.anchor else "false"
    coordinator_env = {
        "METAI_COORDINATOR_RPC_URL": lab.exchange.chain.rpc_url,
        "METAI_COORDINATOR_MANIFEST": str(lab.manifest),
        "METAI_COORDINATOR_KEY_FILE": str(lab.coordinator_key_file),
        "METAI_COORDINATOR_PASSPHRASE": COORDINATOR_PASSPHRASE,
        "METAI_COORDINATOR_MODEL_DIR": str(models),
        "METAI_COORDINATOR_ANCHOR": flag,
    }
    poll = {SUPEREXEC_POLL_ENV: f"{setting.superexec_poll:g}"}
    processes: list[SuperLinkProcess | SuperNodeProcess] = []
    agents: list[SignerProcess] = []
    gateway: int | None = None
    names = [f"hospital-{index}" for index in range(len(lab.nodes))]
    hosts = [placement.address("coord")] if placement.hosts else []
    security: FlowerSecurity | None = make_security(run_dir / "security", names, hosts=hosts) if setting.tls else None
    try:
        started = time.perf_counter()
        with placement.at("coord"):
            with _environment({**coordinator_env, **poll}):  # the ServerApp inherits the SuperLink's environment
                superlink = start_superlink(run_dir / "superlink", security=security)
            processes.append(superlink)
            if security is not None:
                register_supernodes(superlink, security, names, superlink.flwr_home)
            write_federation_config(superlink.flwr_home, _CONNECTION, superlink, security)
        fleet, gateway = placement.fleet(superlink, security, run_dir / "gateway.log")
        with _environment(poll):
            for index, node in enumerate(lab.nodes):
                config: dict[str, str] = {NodeConfigKey.NODE_DIR: str(node.dir), NodeConfigKey.ANCHOR: flag,
                                          NodeConfigKey.PASSPHRASE_FILE: str(node.dir / "passphrase")}
                with placement.at(hospital_host(index)):
                    if setting.anchor:  # as deploy.federation runs a node: its key unlocked once, in a signing agent
                        agents.append(start_signer(node.dir, node.dir / "passphrase",
                                                   run_dir / f"signer-{index}.log", f"hospital-{index}"))
                        config[NodeConfigKey.SIGNER_SOCKET] = str(agents[-1].socket)
                    processes.append(start_supernode(
                        run_dir, fleet, names[index], node_config=config, security=security,
                        torch_threads=threads_per_node(len(lab.nodes)), isolation=setting.isolation,
                        pacing=Pacing() if setting.paced else None))
        deployed = time.perf_counter() - started
        pids = [p.pid for p in processes] + ([gateway] if gateway is not None else [])
        idle = {"cold": deployment_cpu_share(pids, idle_seconds)} if idle_seconds else {}
        started = time.perf_counter()
        with placement.at("coord"):
            result = run_app(REPO_ROOT, flwr_home=superlink.flwr_home, federation=_CONNECTION,
                             run_config={**run_config, "study-id": study_id, "poll-interval": setting.poll_interval,
                                         "reply-pull-backoff": setting.reply_pull_backoff},
                             timeout=_RUN_TIMEOUT)
        wall = time.perf_counter() - started
        if idle_seconds:
            idle["active"] = deployment_cpu_share(pids, idle_seconds)
    finally:
        _stop_all(processes)
        if gateway is not None:
            stop_tree(gateway)
        for agent in agents:
            stop_signer(agent)
    log = read_study_log(study_folder(models, study_id)).to_json()  # checked for its format and version
    return StudyRun(setting, study_id, result.run_id, wall, deployed, log, idle)


def deployment_cpu_share(pids: Sequence[int], seconds: float, interval: float = 0.5) -> float:
    """CPU the processes ``pids`` and all their descendants use over the next ``seconds``, as a share of one CPU.

    The tree is sampled every ``interval`` seconds and each process (by PID and start time)
    counts what it used between its first and its last sample (from zero if it started in
    between), so a process that ends in between keeps what it used until its last sample. A
    parent's ``cutime`` is not used: a child reaped by a parent that ignores SIGCHLD never adds to it.
    """
    first: dict[tuple[int, int], float] = {}
    last: dict[tuple[int, int], float] = {}

    def sample(initial: bool) -> None:
        for top in pids:
            for pid in (top, *(child for child, _ in descendants(top))):
                try:
                    text = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue  # it ended while we looked
                fields = text[text.rindex(")") + 2:].split()
                key, used = (pid, int(fields[19])), (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
                first.setdefault(key, used if initial else 0.0)
                last[key] = used

    deadline = time.monotonic() + seconds
    sample(initial=True)
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(interval, left))
        sample(initial=False)
    return sum(last[key] - first[key] for key in last) / seconds


def _stop_all(processes: list[SuperLinkProcess | SuperNodeProcess]) -> None:
    # Every process is stopped even if one cannot be; a failure here must not hide the run's own error.
    for process in reversed(processes):
        try:
            stop(process)
        except OSError as exc:
            print(f"could not stop PID {process.pid}: {exc}", file=sys.stderr)


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the processes started inside; restore them afterwards."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
