"""A study run's rounds as benchmarks/federated.py reports them: each round split into parts, and their means.

A round's wall time is what the ServerApp measured from sending the model to having recorded the
round (``study.json``: ``seconds``). It is split, with the times the nodes measured themselves,
into parts that add up to it; "the slowest node" is the one whose own work (handler + anchoring)
took longest:

- compute: loading the cohort's records and training, on the slowest node (the node's ClientApp
  evaluates nothing; the coordinator evaluates each round's model, under aggregation);
- chain: the slowest node's reads of the study and the consents (check, cohort) and its anchoring
  (update hash, ``contribute`` tx signed by the node's signing agent, cohort file), plus the
  coordinator's check of the replies (hashes, and the contributions on chain when anchoring) and
  ``recordRound``;
- node app start-up: the rest of the slowest node's handler (opening the node, building the model);
- aggregation: the coordinator's aggregation, evaluation and model save;
- Flower: the rest of sending and receiving, beyond the slowest node's own work: transport,
  polling (ServerApp, SuperExec, SuperNode), starting a ClientApp process and importing the app
  with torch (with a process per message).

The overhead of a round is its wall time minus its compute. With a resident worker, round 1 of a
fresh deployment also pays for the worker's first import of the app (torch, the task code) and
opening the node; a SuperNode that has been up does not, so the later rounds are reported apart.
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping
from typing import Any

from benchmarks._federation import StudyRun

__all__ = ["LABELS", "PARTS", "breakdown", "disturbed", "overhead", "parts_note", "summarise"]

PARTS = ("compute", "chain", "app_start", "aggregation", "flower")
LABELS = {"compute": "compute", "chain": "chain", "app_start": "node app start-up", "aggregation": "aggregation",
          "flower": "Flower"}
CPUS = os.cpu_count() or 1
#: A run is disturbed when other processes take more than this share of the CPUs.
QUIET_SHARE = 0.10


def breakdown(round_: Mapping[str, Any]) -> dict[str, float]:
    """Split one round of ``study.json`` into PARTS (seconds) that add up to its wall time (``round``)."""
    server = round_["server_seconds"]
    slowest = max(round_["node_seconds"].values(), key=lambda s: s["node"] + s["anchor"])
    handler_parts = slowest["check"] + slowest["cohort"] + slowest["load"] + slowest["train"]
    parts = {
        "round": float(round_["seconds"]),
        "compute": slowest["load"] + slowest["train"],
        "chain": slowest["check"] + slowest["cohort"] + slowest["anchor"] + server["check"] + server["record"],
        "app_start": slowest["node"] - handler_parts,
        "aggregation": float(server["aggregate_evaluate_save"]),
        "flower": server["send_receive"] - slowest["node"] - slowest["anchor"],
    }
    parts["overhead"] = parts["round"] - parts["compute"]
    # Where Flower's part goes, when the nodes report it (node/client_app.py "dispatch": from the
    # ServerApp making the message to the node's handler starting): the way in of the slowest node,
    # and the rest (its reply's way back to the ServerApp). And whether the nodes trained side by side:
    # their training's wall time against its CPU time ("train_cpu"), and how far apart they started.
    nodes = list(round_["node_seconds"].values())
    if all("dispatch" in n for n in nodes):
        parts["flower_in"] = slowest["dispatch"]
        parts["flower_back"] = parts["flower"] - slowest["dispatch"]
        parts["start_spread"] = max(n["dispatch"] for n in nodes) - min(n["dispatch"] for n in nodes)
        parts["last_node_done"] = max(n["dispatch"] + n["node"] + n["anchor"] for n in nodes)
    if all("train_cpu" in n for n in nodes):
        parts["train_cpu"] = slowest["train_cpu"]
        parts["train_cpu_all"] = sum(n["train_cpu"] for n in nodes)
    return parts


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
        "parts_mean_s": {part: statistics.fmean(r[part] for r in rounds) for part in (*PARTS, "overhead")},
        # rounds 2 and later (a node that has been up), when the nodes report them (see breakdown)
        "flower_split_later_mean_s": {
            part: statistics.fmean(r[part] for r in rounds[1:])
            for part in ("flower_in", "flower_back", "start_spread", "last_node_done", "train_cpu", "train_cpu_all")
            if len(rounds) > 1 and all(part in r for r in rounds[1:])},
        # A worker imports the app (torch, the task) and opens the node with its first message: round 1
        # of a fresh deployment; the later rounds show a node that has been up (as SuperNodes are).
        "overhead_first_s": rounds[0]["overhead"],
        "overhead_later_mean_s": statistics.fmean(r["overhead"] for r in rounds[1:]) if len(rounds) > 1 else math.nan,
        "overhead_later_max_s": max((r["overhead"] for r in rounds[1:]), default=math.nan),
        "rounds_total_s": sum(times),
        "run_wall_s": run.wall_seconds,
        "run_outside_rounds_s": run.wall_seconds - sum(times),
        "deploy_s": run.deploy_seconds,
        "idle_cpu_share": run.idle_cpu,
        "other_processes_cpu_s": others_cpu_s,
        # of all CPUs over the run's wall time: how much of the machine other work took
        "other_processes_cpu_share": others_cpu_s / (run.wall_seconds * CPUS),
        "per_round": [{**r, "raw": raw} for r, raw in zip(rounds, run.log["rounds"], strict=True)],
    }


def parts_note(summary: Mapping[str, Any]) -> str:
    """One line: the mean, median and range of the rounds and the mean of each part."""
    parts = " + ".join(f"{LABELS[p]} {summary['parts_mean_s'][p]:.2f}" for p in PARTS)
    return (f"mean of {summary['rounds']} rounds, median {summary['round_median_s']:.2f}, "
            f"range {summary['round_min_s']:.2f}-{summary['round_max_s']:.2f}; {parts} s")


def disturbed(*compared: Mapping[str, Any]) -> str:
    """A warning for the note when other processes took more than QUIET_SHARE of the CPUs in these runs."""
    shares = [s["other_processes_cpu_share"] for s in compared]
    if max(shares) <= QUIET_SHARE:
        return ""
    listed = " and ".join(f"{100 * share:.0f}%" for share in shares)
    return f"; DISTURBED: other processes took {listed} of the CPUs during these runs, compare on a quiet machine"


def overhead(anchored: Mapping[str, Any], plain: Mapping[str, Any]) -> tuple[float, float]:
    """Anchoring overhead in % of the plain round, and its standard error in percentage points."""
    a = [r["round"] for r in anchored["per_round"]]
    b = [r["round"] for r in plain["per_round"]]
    base = statistics.fmean(b)
    error = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return 100 * (statistics.fmean(a) - base) / base, 100 * error / base
