"""Federated rounds on Flower's deployment engine: how close a round comes to its compute, and what anchoring costs.

Run: ``.venv/bin/python -m benchmarks.federated`` (``--runs before,after`` for some of the runs).
Writes ``benchmarks/results/federated.json`` (with the CPU) and the table in ``benchmarks/README.md``.

Setup (one process, everything on 127.0.0.1, offline): Anvil with the contracts; three hospital
nodes with synthetic ``ct-sinogram-lesion-v1`` records (one per patient), every patient enrolled
and consenting; one identical study per run (same hospitals, task and number of rounds), because
an anchored run completes its study on chain. Each run gets a fresh SuperLink and three
SuperNodes (``deploy/flower/``, torch threads per node = CPUs // nodes as ``deploy/threads.py``
sets them) and the same run config: the demo's study size and local training (40 records a
hospital, 24 epochs, lr 0.003, batch 8; ``RUN_CONFIG``). Anchored runs sign with a signing agent
per node (node/signer.py). The runs, in this order:

1. ``flower-defaults``: Flower as it comes: a ClientApp process per message, the ServerApp pulls
   replies every 3 s (Flower's ``Grid.send_and_receive``), SuperExec asks for tasks every 1 s.
2. ``before``: a ClientApp process per message, the ServerApp pulls every 0.2 s and SuperExec
   every 0.1 s (``poll-interval``, ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``); Flower's own waits
   otherwise: the SuperNode's 3 s when it finds no message and 0.5 s between looks for the reply,
   and a first wait of 1 s for a message or reply object the SuperLink does not have yet, in the
   SuperNode and in the ServerApp (run config ``reply-pull-backoff = 1``).
3. ``paced-subprocess``: as ``before``, with the SuperNode's waits shortened
   (node/federated/pacing.py): what the SuperNode's pacing alone gives.
4. ``after``: the SuperNodes run through node/federated/run_supernode.py: one resident
   ClientApp worker per node (the app, torch and the opened node loaded once) and the pacing;
   the ServerApp's first wait for a reply object is the run config's default (0.05 s); the
   SuperLink's SuperExec (which starts the ServerApp, once per run) polls every 0.5 s, as
   deploy/flower/ sets it.
5. ``after-not-anchored``: as ``after``, with nothing written on chain: the coordinator
   (``METAI_COORDINATOR_ANCHOR=false``) and the nodes (node config ``anchor = "false"``) skip
   the on-chain writes and checks; cohorts are still built from the consents on chain.
6. ``after-tls``: as ``after``, over TLS with SuperNode authentication (a registered key per
   node): how hospitals on other machines connect, here on loopback.
7. ``before-hosts`` and ``after-hosts``: ``before`` and ``after`` over TLS with the chain, the
   coordinator (SuperLink behind the Fleet gateway) and each hospital on a host of its own
   (network namespaces joined by a bridge, benchmarks/_hosts.py; root only, skipped otherwise),
   on a second lab built on that chain.

How a round is split into parts (compute, chain, node app start-up, aggregation, Flower) is in
benchmarks/_rounds.py; a round's overhead is its wall time minus its compute. The target (at most
2 s with the resident worker) is checked on rounds 2 and later: each run starts a fresh
deployment, and its round 1 also pays for the worker's first import of the app and opening the
node, which a hospital's long-lived SuperNode pays once when it starts (it is reported apart).
Per-round figures exclude what a run does once: submission, ServerApp start, reading the study,
waiting for the nodes, the final save and (anchored) the completion tx; the whole run's wall time,
from ``flwr run`` to the end of its log stream, is measured from outside and reported too. Before and after each run
the CPU the deployment (SuperLink, SuperNodes and their children) uses while it waits is
measured for ``--idle-seconds``: the polling's standing cost, before any message and right after
the run (when a paced SuperNode polls at its short interval).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks._cpu import ForeignCpu, wait_for_quiet
from benchmarks._federation import (
    LOOPBACK,
    NODE_PASSPHRASE,
    REPO_ROOT,
    TASK,
    FlowerSetting,
    Lab,
    build_lab,
    new_study,
    run_study,
)
from benchmarks._hosts import Placement, hospital_host
from benchmarks._rounds import QUIET_SHARE, disturbed, overhead, parts_note, summarise
from benchmarks.report import Measurement, write_results
from coordinator.run_config import RunConfigName
from deploy import netns
from deploy.anvil import start_anvil, stop_anvil
from deploy.demo.study import TRAINING
from node.federated import Pacing

ROUNDS = 5
RECORDS = (40, 40, 40)  # consented records (= patients) per hospital: the demo's study size, three hospitals
TRAIN_TARGET_S = 6.0  # one node's training per round at the demo's size
OVERHEAD_TARGET = 5.0  # % per round, anchoring
ROUND_OVERHEAD_TARGET_S = 2.0  # a round's wall time beyond its compute, with the resident worker
#: Flower's own: Grid.send_and_receive sleeps 3 s between pulls; SuperExec's task poll default.
FLOWER_POLL, FLOWER_SUPEREXEC_POLL = 3.0, 1.0
TUNED_POLL, TUNED_SUPEREXEC_POLL = 0.2, 0.1
#: deploy/flower/'s SuperExec poll: with the resident worker only the SuperLink runs a SuperExec, which
#: starts a run's ServerApp (once per run, not per round), so the faster poll would only cost CPU.
DEPLOY_SUPEREXEC_POLL = 0.5
# The demo's local training (deploy/demo/study.py), so a node's round is the demo's round.
RUN_CONFIG: dict[str, str | int | float] = {
    RunConfigName.TASK: TASK, RunConfigName.MIN_NODES: len(RECORDS), RunConfigName.ROUND_DELAY: 0.0,
    **{name: TRAINING[name] for name in (RunConfigName.LOCAL_EPOCHS, RunConfigName.LR, RunConfigName.BATCH_SIZE)},
}
#: The ServerApp's first wait for a reply object not yet at the SuperLink: Flower's 1 s before, the run config's after.
AFTER_PULL_BACKOFF = 0.05
#: Every run, in order, with its label in the table.
SETTINGS: dict[str, tuple[FlowerSetting, str]] = {
    s.name: (s, label) for s, label in (
        (FlowerSetting("flower-defaults", True, FLOWER_POLL, FLOWER_SUPEREXEC_POLL), "Flower defaults"),
        (FlowerSetting("before", True, TUNED_POLL, TUNED_SUPEREXEC_POLL), "before: process per message"),
        (FlowerSetting("paced-subprocess", True, TUNED_POLL, TUNED_SUPEREXEC_POLL, paced=True),
         "process per message, paced SuperNode"),
        (FlowerSetting("after", True, TUNED_POLL, DEPLOY_SUPEREXEC_POLL, "worker", True,
                       reply_pull_backoff=AFTER_PULL_BACKOFF),
         "after: resident worker, paced SuperNode"),
        (FlowerSetting("after-not-anchored", False, TUNED_POLL, DEPLOY_SUPEREXEC_POLL, "worker", True,
                       reply_pull_backoff=AFTER_PULL_BACKOFF),
         "after, not anchored"),
        (FlowerSetting("after-tls", True, TUNED_POLL, DEPLOY_SUPEREXEC_POLL, "worker", True, tls=True,
                       reply_pull_backoff=AFTER_PULL_BACKOFF),
         "after, TLS + SuperNode authentication"),
        (FlowerSetting("before-hosts", True, TUNED_POLL, TUNED_SUPEREXEC_POLL, tls=True),
         "before, on hosts of their own"),
        (FlowerSetting("after-hosts", True, TUNED_POLL, DEPLOY_SUPEREXEC_POLL, "worker", True, tls=True,
                       reply_pull_backoff=AFTER_PULL_BACKOFF),
         "after, on hosts of their own"),
    )
}
#: The runs whose coordinator and hospitals are on hosts of their own (benchmarks/_hosts.py).
ON_HOSTS = frozenset({"before-hosts", "after-hosts"})


def measurements(runs: Mapping[str, Mapping[str, Any]]) -> list[Measurement]:
    """The rows of the results table, for the runs measured (by setting name)."""
    label = {name: SETTINGS[name][1] for name in runs}
    rows = []
    for name, s in runs.items():
        worker = s["setting"]["isolation"] == "worker"
        parts, later = s["parts_mean_s"], s["overhead_later_mean_s"]
        rows.append(Measurement(
            f"per-round overhead beyond compute, rounds 2-{s['rounds']}, {label[name]}", round(later, 3), "s",
            target=f"<= {ROUND_OVERHEAD_TARGET_S:g}" if worker else "",
            met=later <= ROUND_OVERHEAD_TARGET_S if worker else None,
            note=f"max {s['overhead_later_max_s']:.2f}; round 1 {s['overhead_first_s']:.2f}; all rounds: wall "
                 f"{s['round_mean_s']:.2f} - compute {parts['compute']:.2f} = {parts['overhead']:.2f}" + disturbed(s)))
    rows += [Measurement(f"per-round wall time, {label[name]}", round(s["round_mean_s"], 3), "s", note=parts_note(s))
             for name, s in runs.items()]
    if "before" in runs and "after" in runs:
        before, after = runs["before"], runs["after"]
        rows.append(Measurement(
            "per-round wall time saved by the resident worker and the pacing", round(
                100 * (1 - after["round_mean_s"] / before["round_mean_s"]), 1), "%",
            note=f"{before['round_mean_s']:.2f} s -> {after['round_mean_s']:.2f} s, all rounds; overhead beyond "
                 f"compute {before['parts_mean_s']['overhead']:.2f} s -> {after['parts_mean_s']['overhead']:.2f} s"
                 + disturbed(before, after)))
    if "after" in runs and "after-not-anchored" in runs:
        anchored, plain = runs["after"], runs["after-not-anchored"]
        share, error = overhead(anchored, plain)
        rows.append(Measurement(
            "anchoring overhead per round (after)", round(share, 1), "%", target=f"<= {OVERHEAD_TARGET:g}",
            met=share <= OVERHEAD_TARGET,
            note=f"{anchored['round_mean_s']:.2f} s anchored vs {plain['round_mean_s']:.2f} s not; "
                 f"standard error {error:.1f} points" + disturbed(anchored, plain)))
        chain = anchored["parts_mean_s"]["chain"] - plain["parts_mean_s"]["chain"]
        rows.append(Measurement(
            "anchoring time on a round's critical path (after)", round(100 * chain / plain["round_mean_s"], 1), "%",
            note=f"{chain:.2f} s: chain part anchored minus not, over the round not anchored; slowest node's "
                 "contribute tx (signed by its agent), coordinator's checks + recordRound"
                 + disturbed(anchored, plain)))
    trains = [node["train"] for s in runs.values() for r in s["per_round"]
              for node in r["raw"]["node_seconds"].values()]
    rows.append(Measurement(
        "training per node and round (demo size)", round(statistics.fmean(trains), 3), "s",
        target=f"<= {TRAIN_TARGET_S:g}", met=max(trains) <= TRAIN_TARGET_S,
        note=f"mean of {len(trains)} (every node, round and run), max {max(trains):.2f}; {RECORDS[0]} records, "
             f"{RUN_CONFIG[RunConfigName.LOCAL_EPOCHS]} epochs, {len(RECORDS)} nodes, torch threads per node = "
             "CPUs // nodes (deploy/threads.py)" + disturbed(*runs.values())))
    for name, s in runs.items():
        for state, when in (("cold", "before any message"), ("active", "right after the run")):
            if state in s["idle_cpu_share"]:
                rows.append(Measurement(
                    f"deployment's CPU while waiting {when}, {label[name]}",
                    round(100 * s["idle_cpu_share"][state], 1), "% of a CPU",
                    note=f"SuperLink + {len(RECORDS)} SuperNodes with all their children, "
                         f"over {s['idle_seconds']:g} s"))
    rows += [Measurement(
        f"whole run wall time, {label[name]}", round(s["run_wall_s"], 2), "s",
        note=f"flwr run to finished: {s['rounds_total_s']:.1f} s of rounds + submission, app start, waiting for "
             f"nodes, final save{', completion tx' if s['setting']['anchor'] else ''}; other processes took "
             f"{100 * s['other_processes_cpu_share']:.0f}% of the CPUs") for name, s in runs.items()]
    return rows


def diagnostics(lab: Lab) -> dict[str, float]:
    """What a node's round costs outside training, measured alone: key unlock, a tx, the app's imports.

    With a ClientApp process per message, the imports are paid every round by each node; the key
    is unlocked by the node's signing agent once.
    """
    from node.keys import load_key

    node = lab.nodes[0]
    started = time.perf_counter()
    account = load_key(node.dir, NODE_PASSPHRASE)
    unlock = time.perf_counter() - started
    tx_times = []
    for _ in range(5):
        started = time.perf_counter()
        lab.exchange.chain.send_value(account, lab.coordinator.address, 1)
        tx_times.append(time.perf_counter() - started)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import node.client_app, torch, tasks"], check=True, cwd=REPO_ROOT)
    imports = time.perf_counter() - started
    return {"hospital_key_unlock_s": unlock, "transaction_sent_and_mined_median_s": statistics.median(tx_times),
            "python_start_and_clientapp_imports_s": imports}


def _measure(lab: Lab, names: Sequence[str], studies: Sequence[int], args: argparse.Namespace,
             placement: Placement) -> dict[str, dict[str, Any]]:
    """Run each named setting's study on ``lab`` (one study each), after waiting for a quiet machine."""
    summaries = {}
    for name, study_id in zip(names, studies, strict=True):
        setting = SETTINGS[name][0]
        waited, before = wait_for_quiet(QUIET_SHARE, args.quiet_wait)
        with ForeignCpu() as others:
            run = run_study(lab, setting, study_id, RUN_CONFIG, idle_seconds=args.idle_seconds, placement=placement)
        summaries[name] = summary = summarise(run, others.seconds)
        summary.update(waited_for_quiet_s=waited, other_processes_cpu_share_at_start=before,
                       idle_seconds=args.idle_seconds)
        print(f"{name}: study {study_id}, {args.rounds} rounds, {summary['round_mean_s']:.2f} s per round "
              f"(compute {summary['parts_mean_s']['compute']:.2f}, overhead {summary['parts_mean_s']['overhead']:.2f}, "
              f"rounds 2-: {summary['overhead_later_mean_s']:.2f}), run {run.wall_seconds:.1f} s; other processes "
              f"took {100 * summary['other_processes_cpu_share']:.0f}% of the CPUs (waited {waited:.0f} s "
              "for a quiet machine)", flush=True)
    return summaries


def _on_hosts(root: Path, names: Sequence[str], args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Build a second lab with its chain on a host of its own, and run the named settings on hosts (see _hosts.py)."""
    root.mkdir(parents=True)
    net = netns.Lab.create(["chain", "coord", *(hospital_host(index) for index in range(len(RECORDS)))])
    try:
        placement = Placement(net)
        with placement.at("chain"):  # everything that talks to this chain does it from that host
            anvil = start_anvil(root / "anvil", host=placement.address("chain"))
        try:
            with placement.at("chain"):
                lab = build_lab(root, anvil, RECORDS)
                studies = [new_study(lab, args.rounds) for _ in names]
            return _measure(lab, names, studies, args, placement)
        finally:
            stop_anvil(anvil)
    finally:
        net.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.federated", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per run (default {ROUNDS})")
    parser.add_argument("--runs", default=",".join(SETTINGS),
                        help=f"comma-separated runs, in the order measured (default all: {','.join(SETTINGS)})")
    parser.add_argument("--idle-seconds", type=float, default=20.0,
                        help="seconds the deployment's CPU is measured while waiting, before and after each run")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds each run may wait for other processes to quieten (default 120)")
    parser.add_argument("--keep", type=Path, help="keep the lab (logs, nodes, models) in this new directory")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.runs.split(",") if name.strip()]
    if unknown := [name for name in names if name not in SETTINGS]:
        parser.error(f"unknown runs {unknown}; choose from {', '.join(SETTINGS)}")
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    started = time.perf_counter()
    summaries: dict[str, dict[str, Any]] = {}
    on_loopback = [name for name in names if name not in ON_HOSTS]
    on_hosts = [name for name in names if name in ON_HOSTS]
    if on_hosts and (reason := netns.available()):
        print(f"skipping {', '.join(on_hosts)}: {reason}", file=sys.stderr)
        on_hosts = []
    with tempfile.TemporaryDirectory(prefix="metai-bench-federated-") as tmp:
        root = Path(tmp) if args.keep is None else args.keep
        root.mkdir(parents=True, exist_ok=args.keep is None)
        anvil = start_anvil(root / "anvil")
        try:
            lab = build_lab(root, anvil, RECORDS)
            studies = [new_study(lab, args.rounds) for _ in on_loopback]
            wait_for_quiet(QUIET_SHARE, min(args.quiet_wait, 30.0))
            diag = diagnostics(lab)
            summaries.update(_measure(lab, on_loopback, studies, args, LOOPBACK))
        finally:
            stop_anvil(anvil)
        if on_hosts:
            summaries.update(_on_hosts(root / "hosts", on_hosts, args))
    rows = measurements(summaries)
    extra = {
        "flwr": version("flwr"),
        "task": TASK,
        "records_per_hospital": list(RECORDS),
        "run_config": RUN_CONFIG,
        "flower_defaults": {"poll_interval_s": FLOWER_POLL, "superexec_poll_s": FLOWER_SUPEREXEC_POLL},
        "pacing": Pacing().__dict__,
        "diagnostics": diag,
        "total_benchmark_s": time.perf_counter() - started,
        "runs": summaries,
    }
    path = write_results("federated", rows, extra)
    for m in rows:
        print(f"{m.metric:<70} {m.value:>9,.3f} {m.unit:<10} {m.target:<6} {'' if m.met is None else m.met}")
        if m.note:
            print(f"    {m.note}")
    print(f"diagnostics: {diag}")
    print(f"wrote {path} in {(time.perf_counter() - started) / 60:.1f} min")


if __name__ == "__main__":
    main()
