"""Ingest throughput: 1,000 small CT files through de-identification, hashing and the catalog.

Run: ``.venv/bin/python -m benchmarks.ingest``. The files are copies of pydicom's public
``CT_small.dcm`` (128 x 128, 16 bit) given synthetic patient ids (100 patients x 10 instances)
and fresh UIDs. Writes ``benchmarks/results/ingest.json`` and the README table.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pydicom
from eth_account import Account
from pydicom.data import get_testdata_file

from benchmarks.report import Measurement, write_results
from contracts.chain import Chain
from contracts.manifest import write_manifest
from deploy.anvil import start_anvil, stop_anvil
from deploy.deployer import deploy_contracts
from node.ingest import Ingestor
from node.node import Node

FILES = 1_000
PATIENTS = 100
TARGET_FILES_PER_S = 200


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


def main() -> None:
    """Measure and write the results."""
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        size = make_files(tmp / "input")
        node_chain = start_anvil(tmp / "chain")
        try:
            chain = Chain(node_chain.rpc_url)
            write_manifest(deploy_contracts(chain, Account.from_key(node_chain.dev_keys[0])), tmp / "m.json")
            node = Node.init(tmp / "node", hospital_name="Bench", rpc_url=chain.rpc_url, manifest=tmp / "m.json",
                             passphrase="benchmark passphrase")
            node.secrets  # noqa: B018 - unlock (scrypt) outside the timed part
            t0 = time.perf_counter()
            report = Ingestor(node).run([tmp / "input"])
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = Ingestor(node).run([tmp / "input"])
            rerun_seconds = time.perf_counter() - t0
        finally:
            stop_anvil(node_chain)
    if len(report.ingested) != FILES or report.quarantined:
        raise AssertionError(f"expected {FILES} ingested, got {len(report.ingested)}; {report.quarantined[:3]}")
    rate = FILES / seconds
    rows = [
        Measurement(f"ingest {FILES:,} small CT files (de-id + hash + catalog)", round(rate, 1), "files/s",
                    f">= {TARGET_FILES_PER_S}", rate >= TARGET_FILES_PER_S,
                    note=f"{size / FILES / 1024:.0f} KiB each, {PATIENTS} patients"),
        Measurement("re-ingest of the same files (all duplicates)", round(FILES / rerun_seconds, 1), "files/s",
                    note=f"{len(again.duplicates)} duplicates"),
    ]
    path = write_results("ingest", rows, {"seconds": round(seconds, 3), "rerun_seconds": round(rerun_seconds, 3),
                                          "bytes": size})
    for m in rows:
        print(f"{m.metric:<60} {m.value:>10} {m.unit} {m.target} {m.met}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
