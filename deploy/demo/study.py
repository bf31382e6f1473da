"""The demo's second part: a study trains across two hospitals on the Flower deployment engine, through the API.

A second hospital joins; both hold virtual CT scans of patients in the format of the task
``ct-sinogram-lesion-v1``, and the 80 patients sign in and consent through the coordinator's
API (the relay carries them in a few batch transactions). A researcher has the API prepare a
study request across both and sends it from their own wallet; each hospital approves. A
SuperLink with one SuperNode per hospital comes up (127.0.0.1), the coordinator service is
started again with the SuperLink's address, and the operator starts the study through the API.
The researcher follows it round by round (server-sent events). Each round every node trains on
its cohort at that block and anchors its contribution; the coordinator aggregates and anchors
the round. A patient revokes through the API after round 1, and the chain shows them gone from
round 2 on. Afterwards each hospital publishes its cohort proofs, the researcher downloads the
final model and the lineage, every hash on chain is checked against the files the nodes and the
coordinator kept, and the model card the coordinator wrote is summarised.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table

from contracts.chain import Chain
from contracts.exchange import Exchange
from contracts.roles import Role
from coordinator.run_config import RunConfigName
from coordinator.study_log import study_folder
from deploy.demo.api import JSON, ApiError, Coordinator, Session, request_study
from deploy.demo.service import DemoService
from deploy.errors import DeployError
from deploy.process import HOST, free_port

if TYPE_CHECKING:
    from node.catalog import Dataset
    from node.node import Node

TASK = "ct-sinogram-lesion-v1"
RECORDS_PER_HOSPITAL = 40
ROUNDS = 3
# 40 patients a hospital, each seen turned and mirrored (tasks/augment.py): 24 local epochs find
# the lesion in every task within the 3 rounds (benchmarks/learning.py: 10 data seeds per task).
TRAINING: dict[str, str | int | float] = {
    RunConfigName.LOCAL_EPOCHS: 24, RunConfigName.LR: 0.003, RunConfigName.BATCH_SIZE: 8,
    RunConfigName.EVAL_EXAMPLES: 48, RunConfigName.ROUND_DELAY: 3.0,
}
GRANT: JSON = {"action": "grant", "scope": {"purpose": "GRU"}, "kinds": ["ct-sinogram"]}
REVOKE: JSON = {"action": "revoke", "scope": {"purpose": "GRU"}}


@dataclass
class DemoActors:
    """Who the first part of the demo made, and the coordinator service it started."""

    chain: Chain
    exchange: Exchange
    admin: LocalAccount
    researcher: LocalAccount
    coordinator: LocalAccount
    manifest: Path
    node_passphrase: str
    service: DemoService
    api: Coordinator


@dataclass(frozen=True)
class StudyPart:
    """What the second part leaves for the steps after it."""

    study_id: int
    leaving_pid: str  # the patient who revoked after round 1
    leaving_key: LocalAccount
    next_step: int


def run_study_part(run_dir: Path, first_node_dir: Path, actors: DemoActors, out: Console,
                   step: Callable[[str], None], first_step: int) -> StudyPart:
    """Run the federated study part of the demo (steps ``first_step`` onwards)."""
    from deploy.federation import Federation, NodeSpec, coordinator_env
    from node.node import Node

    ex, api, service = actors.exchange, actors.api, actors.service
    n = first_step
    step(f"{n}. A second hospital joins; each hospital adds virtual CT scans of {RECORDS_PER_HOSPITAL} new patients, "
         "who consent through the API")
    alpha = Node(first_node_dir, actors.node_passphrase)
    beta = Node.init(run_dir / "hospital-node-2", hospital_name="Demo University Hospital",
                     rpc_url=actors.chain.rpc_url, manifest=actors.manifest, passphrase=actors.node_passphrase)
    actors.chain.send_value(actors.admin, beta.address, 10**18)
    ex.roles.grant(actors.admin, Role.HOSPITAL, beta.address)
    patients: dict[str, LocalAccount] = {}
    for index, (node, prefix) in enumerate(((alpha, "TEST-A"), (beta, "TEST-B"))):
        keys, datasets = _add_patients(node, run_dir / "incoming" / f"study-{prefix}", prefix,
                                       seed=7000 + 1000 * index)
        patients.update(keys)
        registered = ", ".join(f"{d.name} (chain dataset {d.chain_dataset_id}, {d.record_count} records)"
                               for d in datasets)
        out.print(f"{node.address}: {len(keys)} patients ingested and enrolled; registered {registered}")
    started = time.monotonic()
    mined = _consent_all(api, patients.values())
    batches = Counter((item["block"], item["tx_hash"]) for item in mined)
    out.print(f"{len(mined)} patients signed in and consented through the API (GRU, CT sinograms) in "
              f"{time.monotonic() - started:.1f} s; the relay carried them in {len(batches)} transactions: "
              + ", ".join(f"block {block} ({count})" for (block, _), count in sorted(batches.items())), soft_wrap=True)

    step(f"{n + 1}. A researcher requests a {ROUNDS}-round study across both hospitals through the API; both approve")
    researcher = api.sign_in(actors.researcher)
    study_id, summary = request_study(researcher, actors.chain, {
        "purpose": "HMB", "kinds": ["ct-sinogram"], "hospitals": [alpha.address, beta.address], "task": TASK,
        "rounds": ROUNDS})
    out.print(f"prepared by the API, signed and sent by the researcher's wallet: {summary}")
    for node in (alpha, beta):
        ex.studies.approve(node.account, study_id)
    view = researcher.study(study_id)
    out.print(f"study {study_id}: task {view['task']}, code hash {view['task_code_hash'][:18]}…, {view['status']}, "
              + ", ".join(f"{d['hospital'][:10]}… {d['decision']}" for d in view["decisions"]))

    step(f"{n + 2}. The study trains on the Flower deployment engine (SuperLink + 2 SuperNodes, 127.0.0.1), "
         "started and followed through the API")
    specs = []
    for node in (alpha, beta):
        secret = node.dir.parent / f"{node.dir.name}.passphrase"
        secret.write_text(actors.node_passphrase, encoding="utf-8")
        secret.chmod(0o600)
        specs.append(NodeSpec(node.dir, secret))
    leaving = next(pid for pid in patients if pid.startswith("TEST-A"))
    # The SuperLink runs the ServerApp with the service's settings (keys, model folder). The service is
    # started again with the SuperLink's address (same database) while the federation comes up.
    link_env, link_port = coordinator_env(service.settings), free_port()
    service.launch(superlink_address=f"{HOST}:{link_port}", superlink_insecure=True)
    with Federation.up(run_dir / "federation", specs, coordinator_env=link_env, port=link_port) as federation:
        out.print(f"SuperLink pid {federation.superlink.pid} at {federation.superlink.control_address}; "
                  + ", ".join(f"SuperNode {s.name[:10]}… pid {s.pid}" for s in federation.supernodes))
        service.wait_ready()
        out.print(f"coordinator service started again with the SuperLink's address: pid {service.pid}, same database")
        operator = api.sign_in(actors.coordinator)
        # Answered once the SuperLink took the run: the start transaction, then `flwr run` packaging
        # and submitting the app (14 s measured alone; longer on a machine busy with other work).
        launch = operator.post(f"/v1/studies/{study_id}/start", {"run_config": TRAINING}, timeout=180)
        out.print(f"the operator starts study {study_id} through the API: "
                  f"{ex.studies.study(study_id).status.name} on chain, Flower run {launch['run_id']} {launch['state']}")
        watcher = _Revocation(api.url, ex, patients[leaving], study_id, out, leaving)
        try:
            _follow(out, researcher, study_id)
        finally:
            watcher.stop()
        out.print("the coordinator's ServerApp writes the model card; the operator waits for the run to end "
                  f"(GET /v1/studies/{study_id}/run)")
        run = _run_end(operator, study_id)
    seconds = _seconds(run["started_at"], run["ended_at"])
    out.print(f"run {run['run_id']} ended {run['status']} after {seconds:.0f} s")

    step(f"{n + 3}. Each hospital publishes its cohort proofs to the coordinator (metai-node publish-proofs)")
    _publish(out, api.url, (alpha, beta), study_id)

    step(f"{n + 4}. The researcher downloads the final model and the study's lineage through the API")
    _download(out, researcher, ex, study_id, run_dir)

    models = service.settings.model_dir
    step(f"{n + 5}. What the chain says about the study, checked against the nodes' and coordinator's files")
    _study_table(out, ex, study_id, (alpha, beta), models, patients[leaving].address, leaving)

    step(f"{n + 6}. The model card the coordinator wrote next to the final model")
    _card_summary(out, study_folder(models, study_id))
    return StudyPart(study_id, leaving, patients[leaving], n + 7)


def _consent_all(api: Coordinator, keys: Iterable[LocalAccount], workers: int = 8) -> list[JSON]:
    """Have each patient sign in and sign a grant, submit them all, and wait for the relay; return the relay items.

    The patients act side by side (``workers`` at a time), as people at their own devices do, so
    the relay finds several signed grants waiting each time it sends a batch.

    Raises:
        ApiError: a request was refused, or the chain refused a grant (its relay item failed).
    """
    def sign(key: LocalAccount) -> tuple[Session, JSON, str]:
        session = api.sign_in(key)
        return (session, *session.sign_consent(GRANT))

    def submit(signed: tuple[Session, JSON, str]) -> tuple[Session, JSON]:
        session, typed, signature = signed
        return session, session.submit(typed, signature)

    with ThreadPoolExecutor(workers, thread_name_prefix="patient") as pool:
        submitted = list(pool.map(submit, list(pool.map(sign, keys))))
    api.wait_relayed()
    items = [session.relay_item(item["id"]) for session, item in submitted]
    for item in items:
        if item["state"] != "mined":
            raise ApiError("GET", f"/v1/consents/relay/{item['id']}", 200, str(item["error"]),
                           f"the relay did not mine a grant: {item['error_detail']}")
    return items


def _follow(out: Console, researcher: Session, study_id: int) -> None:
    """Print each round as the researcher's event stream shows it recorded, until the study completes."""
    shown: set[int] = set()
    out.print(f"the researcher follows study {study_id} (GET /v1/studies/{study_id}/events):")
    for view in researcher.follow(study_id):
        _print_rounds(out, view, shown, final=False)
    _print_rounds(out, researcher.study(study_id), shown, final=True)  # the last round's metrics may come later


def _print_rounds(out: Console, view: JSON, shown: set[int], *, final: bool) -> None:
    for record in view["round_records"]:
        if record["round"] in shown or record["model_hash"] is None or (record["metrics"] is None and not final):
            continue
        shown.add(record["round"])
        cohorts = ", ".join(f"{c['hospital'][:10]}… {c['cohort_count']}" for c in record["contributions"])
        metrics = record["metrics"] or {}
        held_out = (f"held-out accuracy {metrics['accuracy']:.2f}, loss {metrics['loss']:.3f}" if metrics
                    else "held-out metrics not written")
        out.print(f"  round {record['round']} recorded in block {record['block']}: cohorts {cohorts}; {held_out}")
    if view["status"] == "completed" and final:
        out.print(f"  study {view['study_id']} {view['status']}: final model {view['final_model_hash'][:18]}…")


def _run_end(operator: Session, study_id: int, timeout: float = 900.0) -> JSON:
    """The operator's view of the run once Flower reports it ended.

    The study completes on chain before its run ends: the ServerApp still writes the model card.
    """
    deadline = time.monotonic() + timeout
    while (run := operator.get(f"/v1/studies/{study_id}/run"))["state"] in ("launching", "running"):
        if time.monotonic() > deadline:
            raise ApiError("GET", f"/v1/studies/{study_id}/run", 200, "too-slow",
                           f"the run is still {run['state']} {timeout:.0f} s after the study completed")
        time.sleep(1.0)
    if run["state"] == "failed":
        raise ApiError("GET", f"/v1/studies/{study_id}/run", 200, "run-failed", str(run["error"]))
    result: JSON = run
    return result


def _seconds(started: str, ended: str) -> float:
    return (datetime.fromisoformat(ended) - datetime.fromisoformat(started)).total_seconds()


class _Revocation:
    """A patient who revokes through the API as soon as round 1 is anchored (a thread of its own)."""

    def __init__(self, url: str, ex: Exchange, key: LocalAccount, study_id: int, out: Console, pid: str) -> None:
        self._api = Coordinator(url)  # its own connections: the researcher's stream holds one meanwhile
        self._session = self._api.sign_in(key)
        self._done = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(ex, study_id, out, pid), daemon=True)
        self._thread.start()

    def _run(self, ex: Exchange, study_id: int, out: Console, pid: str) -> None:
        try:
            while ex.studies.round_model_hash(study_id, 1) == bytes(32):
                if self._done.wait(0.2):
                    return
            item = self._session.wait_mined(self._session.submit(*self._session.sign_consent(REVOKE))["id"])
            out.print(f"[yellow]{pid} revokes their consent after round 1 through the API: relayed in block "
                      f"{item['block']}[/]")
        except BaseException as exc:  # re-raised by stop(), in the demo's thread
            self._error = exc

    def stop(self) -> None:
        """Stop watching; raise what went wrong in the thread, if anything."""
        self._done.set()
        self._thread.join(60)
        self._api.close()
        if self._error is not None:
            raise self._error


def _publish(out: Console, url: str, nodes: tuple[Node, ...], study_id: int) -> None:
    from node.proof_publish import CoordinatorClient, publish_kept

    for node in nodes:
        client = CoordinatorClient(url, node.account)
        try:
            client.sign_in()
            done = publish_kept(node.dir, client, study_id)
        finally:
            client.close()
        out.print(f"{node.address[:10]}… signed in and published "
                  + ", ".join(f"round {p.round} ({p.records} records)" for p in done))


def _download(out: Console, researcher: Session, ex: Exchange, study_id: int, run_dir: Path) -> None:
    from tasks import load_weights, weights_hash

    anchored = "0x" + ex.studies.study(study_id).final_model_hash.hex()
    model = run_dir / f"study-{study_id}-final-model.npz"
    served = researcher.download_model(study_id, model)
    recomputed = "0x" + weights_hash(load_weights(model)).hex()
    same = served == recomputed == anchored
    out.print(f"final model saved to {model}: X-Model-Hash {served[:18]}…, recomputed from the file "
              f"{recomputed[:18]}…, on chain {anchored[:18]}…: {'equal' if same else '[red]NOT equal[/]'}",
              highlight=False, soft_wrap=True)
    lineage = researcher.get(f"/v1/studies/{study_id}/lineage")
    path = run_dir / f"study-{study_id}-lineage.json"
    path.write_text(json.dumps(lineage, indent=2) + "\n", encoding="utf-8")
    out.print(f"lineage saved to {path}: format {lineage['format']} {lineage['version']}, "
              f"{len(lineage['events'])} events, {len(lineage['study']['round_records'])} rounds, "
              f"final model matches the chain: {'yes' if lineage['final_model_matches_chain'] else '[red]NO[/]'}",
              highlight=False, soft_wrap=True)


def _card_summary(out: Console, folder: Path) -> None:
    """Print the final held-out accuracy, where the card and its pictures are, and robustness in short."""
    from coordinator.model_card import CARD_JSON, CARD_MD, read_card

    card = read_card(folder / CARD_JSON)
    last = card["rounds"][-1]["held_out"]
    out.print(f"final held-out accuracy: {last['accuracy']:.2f} on {last['examples']} virtual patients the coordinator "
              f"made, none of them a hospital's (chance 0.5; loss {last['loss']:.3f})")
    out.print(f"model card: {folder / CARD_MD} (and {CARD_JSON})", highlight=False, soft_wrap=True)
    out.print(f"training curves: {folder / card['training_curves_png']}", highlight=False, soft_wrap=True)
    robustness = card["robustness"]
    if robustness.get("heatmap_png"):
        out.print(f"robustness heat map: {folder / robustness['heatmap_png']}", highlight=False, soft_wrap=True)
    table = Table(title="robustness across virtual scanners (in short)", show_header=False)
    for label, value in robustness.get("short_table") or [("robustness", robustness["note"])]:
        table.add_row(str(label), str(value))
    out.print(table)


def _add_patients(node: Node, folder: Path, prefix: str, seed: int) -> tuple[dict[str, LocalAccount], list[Dataset]]:
    """Ingest and enrol virtual patients, and register their records: a node trains only on registered records."""
    from contracts.datause import Kind
    from node.datasets import register_drafts
    from node.enrol import enrol, issue_challenge
    from node.ingest import Ingestor, read_sidecar
    from tasks import get_task, write_labels_csv

    ids = [f"{prefix}{i:02d}" for i in range(1, RECORDS_PER_HOSPITAL + 1)]
    written = get_task(TASK).write_synthetic_records(folder, RECORDS_PER_HOSPITAL, seed, ids)
    sidecar = folder.parent / f"{folder.name}-labels.csv"
    write_labels_csv(sidecar, written)
    Ingestor(node, sidecar=read_sidecar(sidecar)).run([folder])
    keys: dict[str, LocalAccount] = {}
    for pid in ids:
        keys[pid] = Account.create()
        text = issue_challenge(node, pid).text
        enrol(node, pid, keys[pid].address, keys[pid].sign_message(encode_defunct(text=text)).signature.hex())
    return keys, register_drafts(node, Kind.CT_SINOGRAM)


def _study_table(out: Console, ex: Exchange, study_id: int, nodes: tuple[Node, ...], models: Path,
                 revoked: str, revoked_pid: str) -> None:
    from coordinator.study_log import final_model, read_study_log, round_model
    from node.cohort import build_cohort
    from node.kept_cohort import read_kept_cohort
    from tasks import load_weights, weights_hash

    record = ex.studies.study(study_id)
    folder = study_folder(models, study_id)
    log = read_study_log(folder)
    table = Table(title=f"study {study_id}: {record.status.name}, {record.rounds_completed} rounds",
                  caption="held-out accuracy: the round's model on 48 synthetic patients no hospital holds "
                          "(chance 0.5)")
    for column in ("round", "hospital", "cohort", f"{revoked_pid} in it", "root = recomputed", "model = saved",
                   "held-out accuracy"):
        table.add_column(column)
    problems = 0
    for r in range(1, record.rounds_completed + 1):
        saved = weights_hash(load_weights(round_model(folder, r)))
        model_ok = saved == ex.studies.round_model_hash(study_id, r)
        accuracy = log.rounds[r - 1].eval.get("accuracy", float("nan"))
        for node in nodes:
            on_chain = ex.studies.contribution_of(study_id, r, node.address)
            if on_chain is None:
                raise DeployError(f"hospital {node.address} anchored no contribution to round {r} of study {study_id}")
            kept = read_kept_cohort(node.dir, study_id, r)
            root_ok = build_cohort(node, study_id, kept.block).root == on_chain.cohort_root
            members = {m.patient for m in kept.members}
            problems += (not root_ok) + (not model_ok)
            table.add_row(str(r), node.address[:10] + "…", str(on_chain.cohort_count),
                          "yes" if revoked in members else "no", "yes" if root_ok else "[red]NO[/]",
                          "yes" if model_ok else "[red]NO[/]", f"{accuracy:.2f}")
    out.print(table)
    final_ok = weights_hash(load_weights(final_model(folder))) == record.final_model_hash
    problems += not final_ok
    out.print(f"final model 0x{record.final_model_hash.hex()[:16]}… = {final_model(folder)}: "
              f"{'yes' if final_ok else 'NO'}")
    out.print("every hash on chain matches the files" if problems == 0 else f"[red]{problems} mismatches[/]")
