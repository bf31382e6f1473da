"""Ingest throughput: 1,000 small CT files through de-identification, hashing and the catalog.

Run: ``.venv/bin/python -m benchmarks.ingest``. The files are copies of pydicom's public
``CT_small.dcm`` (128 x 128, 16 bit) given synthetic patient ids (100 patients x 10 instances)
and fresh UIDs. The ingest uses its default worker processes (one per CPU, at least two);
the same files through one in-process worker are measured for comparison. Each figure is the
best of ``REPEATS`` runs into fresh nodes, and the CPU time other processes took meanwhile is
recorded (:class:`benchmarks._cpu.ForeignCpu`): on a shared machine the figure is only as good
as the machine was quiet. Writes ``benchmarks/results/ingest.json`` and the README table.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pydicom
from eth_account import Account
from pydicom.data import get_testdata_file

from benchmarks._cpu import ForeignCpu, wait_for_quiet
from benchmarks.report import Measurement, write_results
from contracts.chain import Chain
from contracts.manifest import write_manifest
from deploy.anvil import start_anvil, stop_anvil
from deploy.deployer import deploy_contracts
from node.ingest import Ingestor, IngestReport
from node.ingest_pool import default_workers
from node.node import Node

FILES = 1_000
PATIENTS = 100
TARGET_FILES_PER_S = 400
REPEATS = 3
QUIET_SHARE = 0.1  # wait (a while) until other processes use less than this share of the CPUs


def make_files(folder: Path) -> int:
    """Write FILES synthetic copies of CT_small.dcm; return their total size in bytes."""
    template = pydicom.dcmread(str(get_testdata_file("CT_small.dcm")))
    folder.mkdir(parents=True)
    total = 0
    for i in range(FILES):
        ds = template.copy()
        patient = i % PATIENTS
        ds.PatientID, ds.PatientName = f"BENCH-{patient:04d}", f"Bench^Patient{patient:04d}"
        ds.StudyInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[f"study-{patient}"])
        ds.SeriesInstanceUID = pydicom.uid.generate_uid(entropy_srcs=[f"series-{patient}"])
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = i // PATIENTS + 1
        path = folder / f"{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return total


def _timed(node: Node, folder: Path, workers: int) -> tuple[float, float, IngestReport]:
    """(seconds, CPU seconds of other processes meanwhile, report) of one ingest."""
    wait_for_quiet(QUIET_SHARE, 20.0)
    with ForeignCpu(interval=0.5) as others:
        t0 = time.perf_counter()
        report = Ingestor(node, workers=workers).run([folder])
        seconds = time.perf_counter() - t0
    if len(report.ingested) + len(report.duplicates) != FILES or report.quarantined or report.skipped:
        raise AssertionError(f"expected {FILES} ingested, got {len(report.ingested)}; {report.quarantined[:3]}")
    return seconds, others.seconds, report


def main() -> None:
    """Measure and write the results."""
    workers = default_workers()
    runs: dict[str, list[dict[str, Any]]] = {"parallel": [], "in_process": [], "rerun": []}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        size = make_files(tmp / "input")
        node_chain = start_anvil(tmp / "chain")
        try:
            chain = Chain(node_chain.rpc_url)
            write_manifest(deploy_contracts(chain, Account.from_key(node_chain.dev_keys[0])), tmp / "m.json")
            for repeat in range(REPEATS):
                for mode, count in (("parallel", workers), ("in_process", 1)):
                    node = Node.init(tmp / f"node-{mode}-{repeat}", hospital_name="Bench", rpc_url=chain.rpc_url,
                                     manifest=tmp / "m.json", passphrase="benchmark passphrase")
                    node.secrets  # noqa: B018 - unlock (scrypt) outside the timed part
                    seconds, foreign, _ = _timed(node, tmp / "input", count)
                    runs[mode].append({"seconds": round(seconds, 3), "files_per_s": round(FILES / seconds, 1),
                                       "other_processes_cpu_s": round(foreign, 2)})
                    if mode == "parallel":
                        seconds, foreign, again = _timed(node, tmp / "input", count)
                        runs["rerun"].append({"seconds": round(seconds, 3), "files_per_s": round(FILES / seconds, 1),
                                              "other_processes_cpu_s": round(foreign, 2),
                                              "duplicates": len(again.duplicates)})
        finally:
            stop_anvil(node_chain)
    best = {mode: max(r["files_per_s"] for r in rs) for mode, rs in runs.items()}
    cpus = len(os.sched_getaffinity(0))
    rows = [
        Measurement(f"ingest {FILES:,} small CT files (de-id + hash + catalog)", best["parallel"], "files/s",
                    f">= {TARGET_FILES_PER_S}", best["parallel"] >= TARGET_FILES_PER_S,
                    note=f"{workers} workers on {cpus} CPUs, best of {REPEATS}; {size / FILES / 1024:.0f} KiB each, "
                         f"{PATIENTS} patients"),
        Measurement("the same in the ingest's own process (--workers 1)", best["in_process"], "files/s",
                    note=f"best of {REPEATS}"),
        Measurement("re-ingest of the same files (all duplicates)", best["rerun"], "files/s",
                    note=f"{workers} workers, best of {REPEATS}"),
    ]
    path = write_results("ingest", rows, {"runs": runs, "bytes": size, "workers": workers, "cpus": cpus})
    for m in rows:
        print(f"{m.metric:<60} {m.value:>10} {m.unit} {m.target} {m.met}")
    for mode, rs in runs.items():
        print(mode, ", ".join(f"{r['files_per_s']} files/s (others {r['other_processes_cpu_s']} CPU s)" for r in rs))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
