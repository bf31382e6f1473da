"""Federated rounds on Flower's deployment engine: what anchoring costs, and what Flower's polling costs.

Run: ``.venv/bin/python -m benchmarks.federated``. Writes ``benchmarks/results/federated.json``
and the table in ``benchmarks/README.md``.

Setup (one process, everything on 127.0.0.1, offline): Anvil with the contracts; two hospital
nodes with synthetic ``ct-sinogram-lesion-v1`` records (one per patient), every patient enrolled
and consenting; three identical studies (same hospitals, task and number of rounds), one per
run, because an anchored run completes its study on chain. Each run gets a fresh SuperLink and
two SuperNodes (``deploy/flower/``, subprocess isolation, no TLS, torch threads per node =
CPUs // nodes as ``deploy/threads.py`` sets them) and the same run config: the demo's study size
and local training (40 records a hospital, 24 epochs, lr 0.003, batch 8; ``RUN_CONFIG``). The
training time of each node and round is reported against the 6 s target. The runs, in this order:

1. Flower's defaults, anchored: the ServerApp pulls replies every 3 s (what Flower's own
   ``Grid.send_and_receive`` does) and SuperExec asks for tasks every 1 s (Flower's default).
2. Tuned, anchored: the ServerApp pulls every 0.2 s, SuperExec polls every 0.1 s (the project's
   defaults: ``poll-interval`` in pyproject.toml, ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` set by
   deploy/flower/). Shorter intervals gain at most half the difference per round (the mean
   wait is half an interval) and cost CPU on every node all the time: an idle SuperLink with two
   SuperNodes took 2%, 13%, 27% and 46% of one CPU at SuperExec polls of 1, 0.1, 0.05 and
   0.02 s on a 2-CPU machine. Flower 1.41 has no setting for the rest: a SuperNode that finds no
   message sleeps 3 s, it looks for its ClientApp's reply every 0.5 s, and every message starts
   a new ClientApp process (``--isolation process`` starts the same one per message).
3. Tuned, not anchored: the coordinator (``METAI_COORDINATOR_ANCHOR=false``) and the nodes
   (node config ``anchor = "false"``) write nothing on chain and skip the on-chain checks of
   replies. Cohorts are still built from the consents on chain.

A round's wall time is what the ServerApp measured from sending the model to having recorded the
round (``study.json``: ``seconds``). It is split, with the times the nodes measured themselves,
into parts that add up to it; "the slowest node" is the one whose own work (handler + anchoring)
took longest:

- compute: loading the cohort's records and training, on the slowest node;
- chain: the slowest node's reads of the study and the consents (check, cohort) and its anchoring
  (update hash, ``contribute`` tx signed by the node's signing agent, cohort file), plus the
  coordinator's check of the replies (hashes, and the contributions on chain when anchoring) and ``recordRound``;
- node app start-up: the rest of the slowest node's handler, mostly importing torch and the
  task code, which every round's new ClientApp process does again (also opening the node and
  building the model);
- aggregation: the coordinator's aggregation, evaluation and model save;
- Flower: the rest of sending and receiving, beyond the slowest node's own work: transport,
  polling (ServerApp, SuperExec, SuperNode), starting the ClientApp process and importing the app.

Per-round figures exclude what a run does once: submission, ServerApp start, reading the study,
waiting for the nodes, the final save and (anchored) the completion tx; the whole run's wall time,
from ``flwr run`` to the end of its log stream, is measured from outside and reported too.
"""

from __future__ import annotations

import argparse
import math
import os
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
    NODE_PASSPHRASE,
    REPO_ROOT,
    TASK,
    FlowerSetting,
    Lab,
    StudyRun,
    build_lab,
    new_study,
    run_study,
)
from benchmarks.report import Measurement, write_results
from coordinator.run_config import RunConfigName
from deploy.anvil import start_anvil, stop_anvil
from deploy.demo.study import TRAINING

ROUNDS = 5
RECORDS = (40, 40)  # consented records (= patients) per hospital: the demo's study
TRAIN_TARGET_S = 6.0  # one node's training per round at the demo's size
CPUS = os.cpu_count() or 1
OVERHEAD_TARGET = 5.0  # % per round
#: A run is disturbed when other processes take more than this share of the CPUs; each run first
#: waits (at most ``--quiet-wait`` seconds) for the rest of the machine to fall below it.
QUIET_SHARE = 0.10
#: Flower's own: Grid.send_and_receive sleeps 3 s between pulls; SuperExec's task poll default.
FLOWER_POLL, FLOWER_SUPEREXEC_POLL = 3.0, 1.0
TUNED_POLL, TUNED_SUPEREXEC_POLL = 0.2, 0.1
# The demo's local training (deploy/demo/study.py), so a node's round is the demo's round.
RUN_CONFIG: dict[str, str | int | float] = {
    RunConfigName.TASK: TASK, RunConfigName.MIN_NODES: 2, RunConfigName.ROUND_DELAY: 0.0,
    **{name: TRAINING[name] for name in (RunConfigName.LOCAL_EPOCHS, RunConfigName.LR, RunConfigName.BATCH_SIZE)},
}
PARTS = ("compute", "chain", "app_start", "aggregation", "flower")
_LABELS = {"compute": "compute", "chain": "chain", "app_start": "node app start-up", "aggregation": "aggregation",
           "flower": "Flower"}


def breakdown(round_: Mapping[str, Any]) -> dict[str, float]:
    """Split one round of ``study.json`` into PARTS (seconds) that add up to its wall time (``round``)."""
    server = round_["server_seconds"]
    slowest = max(round_["node_seconds"].values(), key=lambda s: s["node"] + s["anchor"])
    handler_parts = slowest["check"] + slowest["cohort"] + slowest["load"] + slowest["train"]
    return {
        "round": float(round_["seconds"]),
        "compute": slowest["load"] + slowest["train"],
        "chain": slowest["check"] + slowest["cohort"] + slowest["anchor"] + server["check"] + server["record"],
        "app_start": slowest["node"] - handler_parts,
        "aggregation": float(server["aggregate_evaluate_save"]),
        "flower": server["send_receive"] - slowest["node"] - slowest["anchor"],
    }


def summarise(run: StudyRun, others_cpu_s: float) -> dict[str, Any]:
    """Per-round means of the breakdown, spread of the round time, the run's outside figures.

    ``others_cpu_s``: CPU seconds that processes outside this benchmark took during the run.
    """
    rounds = [breakdown(r) for r in run.log["rounds"]]
    times = [r["round"] for r in rounds]
    return {
        "setting": run.setting.__dict__,
        "study_id": run.study_id,
        "run_id": run.run_id,
        "rounds": len(rounds),
        "round_mean_s": statistics.fmean(times),
        "round_median_s": statistics.median(times),
        "round_stdev_s": statistics.stdev(times) if len(times) > 1 else 0.0,
        "round_min_s": min(times),
        "round_max_s": max(times),
        "parts_mean_s": {part: statistics.fmean(r[part] for r in rounds) for part in PARTS},
        "rounds_total_s": sum(times),
        "run_wall_s": run.wall_seconds,
        "run_outside_rounds_s": run.wall_seconds - sum(times),
        "deploy_s": run.deploy_seconds,
        "other_processes_cpu_s": others_cpu_s,
        # of all CPUs over the run's wall time: how much of the machine other work took
        "other_processes_cpu_share": others_cpu_s / (run.wall_seconds * CPUS),
        "per_round": [{**r, "raw": raw} for r, raw in zip(rounds, run.log["rounds"], strict=True)],
    }


def _parts_note(summary: Mapping[str, Any]) -> str:
    parts = " + ".join(f"{_LABELS[p]} {summary['parts_mean_s'][p]:.2f}" for p in PARTS)
    return (f"mean of {summary['rounds']} rounds, median {summary['round_median_s']:.2f}, "
            f"range {summary['round_min_s']:.2f}-{summary['round_max_s']:.2f}; {parts} s")


def measurements(defaults: Mapping[str, Any], tuned: Mapping[str, Any], off: Mapping[str, Any]) -> list[Measurement]:
    """The rows of the results table."""
    runs = (("Flower defaults, anchored", defaults), ("tuned, anchored", tuned), ("tuned, not anchored", off))
    rows = [Measurement(f"per-round wall time, {label}", round(s["round_mean_s"], 3), "s", note=_parts_note(s))
            for label, s in runs]
    overhead, error = _overhead(tuned, off)
    rows.append(Measurement(
        "anchoring overhead per round (tuned)", round(overhead, 1), "%", target=f"<= {OVERHEAD_TARGET:g}",
        met=overhead <= OVERHEAD_TARGET,
        note=f"{tuned['round_mean_s']:.2f} s anchored vs {off['round_mean_s']:.2f} s not; "
             f"standard error {error:.1f} points" + _disturbed(tuned, off),
    ))
    anchoring = tuned["parts_mean_s"]["chain"] - off["parts_mean_s"]["chain"]
    rows.append(Measurement(
        "anchoring time on a round's critical path (tuned)", round(100 * anchoring / off["round_mean_s"], 1), "%",
        note=f"{anchoring:.2f} s: chain part anchored minus not, over the round not anchored; "
             "slowest node's contribute tx (signed by its agent), coordinator's checks + recordRound"
             + _disturbed(tuned, off),
    ))
    saved = 100 * (1 - tuned["round_mean_s"] / defaults["round_mean_s"])
    rows.append(Measurement(
        "Flower tuning: per-round wall time saved (anchored)", round(saved, 1), "%",
        note=f"{defaults['round_mean_s']:.2f} s -> {tuned['round_mean_s']:.2f} s; ServerApp poll "
             f"{FLOWER_POLL:g} -> {tuned['setting']['poll_interval']:g} s, SuperExec poll "
             f"{FLOWER_SUPEREXEC_POLL:g} -> {tuned['setting']['superexec_poll']:g} s" + _disturbed(defaults, tuned),
    ))
    trains = [node["train"] for _, s in runs for r in s["per_round"] for node in r["raw"]["node_seconds"].values()]
    rows.append(Measurement(
        "training per node and round (demo size)", round(statistics.fmean(trains), 3), "s",
        target=f"<= {TRAIN_TARGET_S:g}", met=max(trains) <= TRAIN_TARGET_S,
        note=f"mean of {len(trains)} (every node, round and run), max {max(trains):.2f}; {RECORDS[0]} records, "
             f"{RUN_CONFIG[RunConfigName.LOCAL_EPOCHS]} epochs, torch threads per node = CPUs // nodes "
             "(deploy/threads.py)"
             + _disturbed(*(s for _, s in runs)),
    ))
    for label, s in runs[:2]:
        rows.append(Measurement(f"Flower part of a round (transport, polling, process start), {label}",
                                round(s["parts_mean_s"]["flower"], 3), "s"))
    for label, s in runs:
        rows.append(Measurement(
            f"whole run wall time, {label}", round(s["run_wall_s"], 2), "s",
            note=f"flwr run to finished: {s['rounds_total_s']:.1f} s of rounds + submission, app start, waiting "
                 f"for nodes, final save{', completion tx' if s is not off else ''}; other processes took "
                 f"{100 * s['other_processes_cpu_share']:.0f}% of the CPUs",
        ))
    return rows


def _disturbed(*compared: Mapping[str, Any]) -> str:
    shares = [s["other_processes_cpu_share"] for s in compared]
    if max(shares) <= QUIET_SHARE:
        return ""
    listed = " and ".join(f"{100 * share:.0f}%" for share in shares)
    return f"; DISTURBED: other processes took {listed} of the CPUs during these runs, compare on a quiet machine"


def _overhead(anchored: Mapping[str, Any], plain: Mapping[str, Any]) -> tuple[float, float]:
    """Anchoring overhead in % of the plain round, and its standard error in percentage points."""
    a = [r["round"] for r in anchored["per_round"]]
    b = [r["round"] for r in plain["per_round"]]
    base = statistics.fmean(b)
    error = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return 100 * (statistics.fmean(a) - base) / base, 100 * error / base


def diagnostics(lab: Lab) -> dict[str, float]:
    """What a node's round costs outside training, measured alone: key unlock, a tx, the app's imports.

    In a run, each of these is paid every round by each node (a new ClientApp process per message),
    with both nodes and the coordinator sharing this machine's CPUs.
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


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and write the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.federated", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"rounds per run (default {ROUNDS})")
    parser.add_argument("--poll", type=float, default=TUNED_POLL, help="tuned ServerApp poll interval, s")
    parser.add_argument("--superexec-poll", type=float, default=TUNED_SUPEREXEC_POLL,
                        help="tuned FLWR_SUPEREXEC_TASK_POLL_INTERVAL, s")
    parser.add_argument("--quiet-wait", type=float, default=120.0,
                        help="seconds each run may wait for other processes to quieten (default 120)")
    parser.add_argument("--keep", type=Path, help="keep the lab (logs, nodes, models) in this new directory")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds must be at least 2")
    settings = (
        FlowerSetting("flower-defaults-anchored", True, FLOWER_POLL, FLOWER_SUPEREXEC_POLL),
        FlowerSetting("tuned-anchored", True, args.poll, args.superexec_poll),
        FlowerSetting("tuned-not-anchored", False, args.poll, args.superexec_poll),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="metai-bench-federated-") as tmp:
        root = Path(tmp) if args.keep is None else args.keep
        root.mkdir(parents=True, exist_ok=args.keep is None)
        anvil = start_anvil(root / "anvil")
        try:
            lab = build_lab(root, anvil, RECORDS)
            studies = [new_study(lab, args.rounds) for _ in settings]
            wait_for_quiet(QUIET_SHARE, min(args.quiet_wait, 30.0))
            diag = diagnostics(lab)
            summaries = []
            for setting, study_id in zip(settings, studies, strict=True):
                waited, before = wait_for_quiet(QUIET_SHARE, args.quiet_wait)
                with ForeignCpu() as others:
                    run = run_study(lab, setting, study_id, RUN_CONFIG)
                summaries.append(summary := summarise(run, others.seconds))
                summary["waited_for_quiet_s"], summary["other_processes_cpu_share_at_start"] = waited, before
                print(f"{setting.name}: study {study_id}, {args.rounds} rounds, {summary['round_mean_s']:.2f} s "
                      f"per round, run {run.wall_seconds:.1f} s; other processes took "
                      f"{100 * summary['other_processes_cpu_share']:.0f}% of the CPUs (waited {waited:.0f} s "
                      "for a quiet machine)")
        finally:
            stop_anvil(anvil)
    defaults, tuned, off = summaries
    rows = measurements(defaults, tuned, off)
    extra = {
        "flwr": version("flwr"),
        "task": TASK,
        "records_per_hospital": list(RECORDS),
        "run_config": RUN_CONFIG,
        "flower_defaults": {"poll_interval_s": FLOWER_POLL, "superexec_poll_s": FLOWER_SUPEREXEC_POLL},
        "diagnostics": diag,
        "total_benchmark_s": time.perf_counter() - started,
        "runs": {s["setting"]["name"]: s for s in summaries},
    }
    path = write_results("federated", rows, extra)
    for m in rows:
        print(f"{m.metric:<66} {m.value:>9,.3f} {m.unit:<3} {m.target:<6} {'' if m.met is None else m.met}")
        if m.note:
            print(f"    {m.note}")
    print(f"diagnostics: {diag}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
