"""The demo's second part: a study trains across two hospitals on the Flower deployment engine.

A second hospital joins; both hold virtual CT scans of consenting patients in the format of
the task ``ct-sinogram-lesion-v1``. A researcher requests a study across both, each hospital
approves, the coordinator starts it and launches it on a SuperLink with one SuperNode per
hospital (127.0.0.1). Each round every node trains on its cohort at that block and anchors
its contribution; the coordinator aggregates and anchors the round. A patient revokes after
round 1, and the chain shows them gone from round 2 on. At the end every hash on chain is
checked against the files the nodes and the coordinator kept, and the model card the
coordinator wrote is summarised.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.exchange import Exchange
from contracts.roles import Role
from contracts.studies import StudyRequest
from coordinator.run_config import RunConfigName
from coordinator.study_log import study_folder

if TYPE_CHECKING:
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
_COORDINATOR_PASSPHRASE = "demo coordinator passphrase, local only"


@dataclass
class DemoActors:
    """Who the first part of the demo made."""

    chain: Chain
    exchange: Exchange
    admin: LocalAccount
    researcher: LocalAccount
    coordinator: LocalAccount
    manifest: Path
    node_passphrase: str


def run_study_part(run_dir: Path, first_node_dir: Path, actors: DemoActors, out: Console,
                   step: Callable[[str], None], first_step: int) -> None:
    """Run the federated study part of the demo (steps ``first_step`` onwards)."""
    from coordinator.core.config import CoordinatorSettings
    from deploy.federation import Federation, NodeSpec, coordinator_env
    from node.node import Node
    from tasks import task_code_hash

    ex = actors.exchange
    n = first_step
    step(f"{n}. A second hospital joins; each hospital adds virtual CT scans of {RECORDS_PER_HOSPITAL} new patients")
    alpha = Node(first_node_dir, actors.node_passphrase)
    beta = Node.init(run_dir / "hospital-node-2", hospital_name="Demo University Hospital",
                     rpc_url=actors.chain.rpc_url, manifest=actors.manifest, passphrase=actors.node_passphrase)
    actors.chain.send_value(actors.admin, beta.address, 10**18)
    ex.roles.grant(actors.admin, Role.HOSPITAL, beta.address)
    patients: dict[str, LocalAccount] = {}
    for index, (node, prefix) in enumerate(((alpha, "TEST-A"), (beta, "TEST-B"))):
        keys = _add_patients(node, run_dir / "incoming" / f"study-{prefix}", prefix, seed=7000 + 1000 * index)
        for key in keys.values():
            ex.consent.relay(actors.coordinator, ex.consent.sign_grant(key, Scope(purpose=Purpose.GRU),
                                                                      Kind.CT_SINOGRAM, NO_EXPIRY))
        patients.update(keys)
        out.print(f"{node.address}: {len(keys)} patients ingested, enrolled, consented (GRU, CT sinograms)")

    step(f"{n + 1}. A researcher requests a {ROUNDS}-round study across both hospitals; both approve; it starts")
    code_hash = task_code_hash(TASK)
    study_id, _ = ex.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(alpha.address, beta.address),
        task_code_hash=code_hash, rounds=ROUNDS))
    for node in (alpha, beta):
        ex.studies.approve(node.account, study_id)
    ex.studies.start(actors.coordinator, study_id)
    out.print(f"study {study_id}: task {TASK}, code hash 0x{code_hash.hex()[:16]}…, "
              f"{ex.studies.study(study_id).status.name}")

    step(f"{n + 2}. The study trains on the Flower deployment engine (SuperLink + 2 SuperNodes, 127.0.0.1)")
    key_file = run_dir / "coordinator-key.json"
    key_file.write_text(json.dumps(Account.encrypt(actors.coordinator.key, _COORDINATOR_PASSPHRASE)), encoding="utf-8")
    models = run_dir / "models"
    settings = CoordinatorSettings(rpc_url=actors.chain.rpc_url, manifest=actors.manifest, key_file=key_file,
                                   passphrase=SecretStr(_COORDINATOR_PASSPHRASE), model_dir=models)
    specs = []
    for node in (alpha, beta):
        secret = node.dir.parent / f"{node.dir.name}.passphrase"
        secret.write_text(actors.node_passphrase, encoding="utf-8")
        secret.chmod(0o600)
        specs.append(NodeSpec(node.dir, secret))
    leaving = next(pid for pid in patients if pid.startswith("TEST-A"))
    revoked_in: list[int] = []
    with Federation.up(run_dir / "federation", specs, coordinator_env=coordinator_env(settings)) as federation:
        out.print(f"SuperLink pid {federation.superlink.pid} at {federation.superlink.control_address}; "
                  + ", ".join(f"SuperNode {s.name[:10]}… pid {s.pid}" for s in federation.supernodes))
        watcher = _revoke_after_round_one(ex, actors.coordinator, patients[leaving], study_id, revoked_in, out, leaving)
        try:
            result = federation.launch(study_id, TRAINING,
                                       timeout=900, on_log=lambda line: _show_round_line(out, line))
        finally:
            watcher.set()
    out.print(f"run {result.run_id} ended {result.status} after {result.seconds:.0f} s")

    step(f"{n + 3}. What the chain says about the study, checked against the nodes' and coordinator's files")
    _study_table(out, ex, study_id, (alpha, beta), models, patients[leaving].address, leaving)

    step(f"{n + 4}. The model card the coordinator wrote next to the final model")
    _card_summary(out, study_folder(models, study_id))


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


def _add_patients(node: Node, folder: Path, prefix: str, seed: int) -> dict[str, LocalAccount]:
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
    return keys


def _revoke_after_round_one(ex: Exchange, relayer: LocalAccount, key: LocalAccount, study_id: int,
                            revoked_in: list[int], out: Console, pid: str) -> threading.Event:
    done = threading.Event()

    def watch() -> None:
        while ex.studies.round_model_hash(study_id, 1) == bytes(32):
            if done.wait(0.2):
                return
        tx = ex.consent.relay(relayer, ex.consent.sign_revoke(key, Scope(purpose=Purpose.GRU)))
        revoked_in.append(tx.block_number)
        out.print(f"[yellow]{pid} revokes their consent after round 1 (block {tx.block_number})[/]")

    threading.Thread(target=watch, daemon=True).start()
    return done


def _show_round_line(out: Console, line: str) -> None:
    if "metai.coordinator" in line:
        out.print("  " + line.split("metai.coordinator: ", 1)[-1], highlight=False, markup=False)


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
