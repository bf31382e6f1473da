"""Does the demo's study learn, every time? Ten data seeds for each task, in one process.

Run: ``.venv/bin/python -m benchmarks.learning``. Writes ``benchmarks/results/learning.json``
and its rows in the table of ``benchmarks/README.md``.

Each run is the demo's study (``deploy/demo/study.py``): two hospitals with
``RECORDS_PER_HOSPITAL`` (40) synthetic patients each, ``ROUNDS`` (3) rounds, the demo's
``TRAINING`` (local epochs, learning rate, batch size). Per round, each hospital trains the
global model on its records exactly as ``node.training.train_local`` does
(``tasks.train`` with ``TrainConfig(epochs, lr, batch_size, proximal_mu=0, seed=round)``, on
a fresh ``task.build_model()`` given the global weights), and the coordinator aggregates with
``coordinator.aggregation.fedavg`` (FedAvg weighted by cohort size), the function the
ServerApp calls. Flower, the chain and the record files are left out: the data are the inputs
those records load to (``Task.synthetic_examples`` makes them through the same loading code;
tests/tasks check that).

Run ``k`` of a task draws hospital ``h``'s patients from seed ``SEED_BASE + 100 k + h`` and the
held-out patients (``HELD_OUT`` of them, half with a lesion) from ``SEED_BASE + 100 k + 99``: other
patients and other noise than any hospital holds (checked: no held-out phantom description
equals a hospital's). The held-out accuracy after the last round is what the targets apply
to: at least 0.85 in 9 of 10 runs per task, and a mean of at least 0.90.

The training time per node and round is measured too (one torch thread, the share of a 2-core
machine with two nodes); on a shared machine it is as noisy as the machine is busy, which the
results record.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import torch

from benchmarks._cpu import ForeignCpu, wait_for_quiet
from benchmarks.report import Measurement, write_results

TASKS = ("ct-sinogram-lesion-v1", "ct-image-lesion-v1", "mr-kspace-lesion-v1")
RUNS = 10
SEED_BASE = 510_000
HELD_OUT = 200
HOSPITALS = 2
ACCURACY_FLOOR = 0.85
RUNS_AT_FLOOR = 9
MEAN_TARGET = 0.90
QUIET_SHARE = 0.10


@dataclass
class RunResult:
    """One study of one task: held-out metrics per round and the nodes' training seconds."""

    task: str
    run: int
    rounds: list[dict[str, float]] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)

    @property
    def final_accuracy(self) -> float:
        """Held-out accuracy of the model after the last round."""
        return self.rounds[-1]["accuracy"]


def demo_configuration() -> tuple[int, int, dict[str, float]]:
    """Return the demo's records per hospital, rounds, and local training settings."""
    from coordinator.run_config import RunConfigName
    from deploy.demo.study import RECORDS_PER_HOSPITAL, ROUNDS, TRAINING

    training = {"epochs": float(TRAINING[RunConfigName.LOCAL_EPOCHS]), "lr": float(TRAINING[RunConfigName.LR]),
                "batch_size": float(TRAINING[RunConfigName.BATCH_SIZE])}
    return RECORDS_PER_HOSPITAL, ROUNDS, training


def hospital_seed(run: int, hospital: int) -> int:
    """Seed of hospital ``hospital``'s patients in run ``run``."""
    return SEED_BASE + 100 * run + hospital


def held_out_seed(run: int) -> int:
    """Seed of the held-out patients of run ``run``."""
    return SEED_BASE + 100 * run + 99


def federated_run(code: str, run: int, held_out: int = HELD_OUT) -> RunResult:
    """Run the demo's study of task ``code`` with the data of run ``run``; return what it measured.

    Raises:
        RuntimeError: a held-out patient is one a hospital holds (the seeds collide).
    """
    from coordinator.aggregation import fedavg
    from tasks import TrainConfig, evaluate, get_task, get_weights, set_weights, train
    from tasks.synthetic import balanced_patients

    task = get_task(code)
    records, rounds, training = demo_configuration()
    data = [task.synthetic_examples(records, hospital_seed(run, h)) for h in range(HOSPITALS)]
    test_inputs, test_labels = task.synthetic_examples(held_out, held_out_seed(run))
    _check_disjoint(task, records, run, held_out, balanced_patients)
    model = task.build_model()
    weights = get_weights(model)
    result = RunResult(code, run)
    for round_ in range(1, rounds + 1):
        updates = []
        for inputs, labels in data:
            local = task.build_model()
            set_weights(local, weights)
            started = time.perf_counter()
            train(local, inputs, labels, TrainConfig(epochs=int(training["epochs"]), lr=float(training["lr"]),
                                                     batch_size=int(training["batch_size"]), seed=round_), weights)
            result.train_seconds.append(time.perf_counter() - started)
            updates.append(get_weights(local))
        weights = fedavg(updates, [records] * HOSPITALS)
        set_weights(model, weights)
        result.rounds.append(evaluate(model, test_inputs, test_labels))
    return result


def _check_disjoint(task: Any, records: int, run: int, held_out: int, patients_of: Any) -> None:
    def described(n: int, seed: int) -> set[str]:
        drawn, _ = patients_of(n, seed, task.lesion_radius_mm, task.lesion_contrast_hu)
        return {p.description + repr(p.lesions) for p in drawn}

    held = described(held_out, held_out_seed(run))
    for h in range(HOSPITALS):
        if shared := held & described(records, hospital_seed(run, h)):
            raise RuntimeError(f"run {run}: {len(shared)} held-out patients are also hospital {h}'s; change SEED_BASE")


def summarise(code: str, results: list[RunResult], workers: int = 1) -> list[Measurement]:
    """Return the rows of the results table for one task's runs."""
    finals = [r.final_accuracy for r in results]
    at_floor = sum(a >= ACCURACY_FLOOR for a in finals)
    mean = statistics.fmean(finals)
    seconds = [s for r in results for s in r.train_seconds]
    per_round = " / ".join(f"{statistics.fmean(r.rounds[i]['accuracy'] for r in results):.3f}"
                           for i in range(len(results[0].rounds)))
    return [
        Measurement(f"{code}: held-out accuracy after the last round, mean of {len(finals)} runs "
                    f"(min {min(finals):.3f}, max {max(finals):.3f}; mean per round {per_round})",
                    round(mean, 4), "", f">= {MEAN_TARGET}", mean >= MEAN_TARGET),
        Measurement(f"{code}: runs with held-out accuracy >= {ACCURACY_FLOOR} after the last round",
                    at_floor, f"of {len(finals)}", f">= {RUNS_AT_FLOOR}", at_floor >= RUNS_AT_FLOOR),
        Measurement(f"{code}: training time per node and round (median of {len(seconds)}, max {max(seconds):.2f}; "
                    f"1 torch thread, {workers} benchmark process(es) side by side; benchmarks.federated measures "
                    "it on the deployment engine)", round(statistics.median(seconds), 3), "s"),
    ]


def _task_runs(code: str, runs: int) -> list[RunResult]:
    torch.set_num_threads(1)  # a node's share of a 2-core machine running two nodes (deploy/threads.py)
    results = []
    for run in range(runs):
        results.append(federated_run(code, run))
        curve = ", ".join(f"{m['accuracy']:.3f}" for m in results[-1].rounds)
        print(f"{code} run {run}: held-out accuracy per round {curve}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its results; return 0."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="data seeds per task")
    parser.add_argument("--tasks", nargs="*", default=list(TASKS), help="task codes")
    parser.add_argument("--workers", type=int, default=1, help="tasks run side by side, one process each")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="seconds to wait for a quiet machine")
    args = parser.parse_args(argv)
    waited, before = wait_for_quiet(QUIET_SHARE, args.quiet_wait)
    rows: list[Measurement] = []
    details: dict[str, Any] = {}
    started = time.perf_counter()
    with ForeignCpu() as others, ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {code: pool.submit(_task_runs, code, args.runs) for code in args.tasks}
        for code, future in futures.items():
            results = future.result()
            rows += summarise(code, results, args.workers)
            details[code] = [{"run": r.run, "hospital_seeds": [hospital_seed(r.run, h) for h in range(HOSPITALS)],
                              "held_out_seed": held_out_seed(r.run), "rounds": r.rounds,
                              "train_seconds": [round(s, 4) for s in r.train_seconds]} for r in results]
    elapsed = time.perf_counter() - started
    share = others.seconds / (elapsed * (os.cpu_count() or 1))
    records, rounds, training = demo_configuration()
    rows.append(Measurement("CPU taken by other processes while measuring (training times are as noisy as this)",
                            round(100 * share, 1), "%", note=f"waited {waited:.0f} s for {100 * before:.0f}%"))
    extra = {"configuration": {"records_per_hospital": records, "hospitals": HOSPITALS, "rounds": rounds,
                               "training": training, "held_out": HELD_OUT, "seed_base": SEED_BASE},
             "workers": args.workers, "runs": details, "seconds": round(elapsed, 1)}
    path = write_results("learning", rows, extra)
    for row in rows:
        print(f"{row.metric}: {row.value} {row.unit} (target {row.target or '-'}, met {row.met})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
