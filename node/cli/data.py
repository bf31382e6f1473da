"""Bringing data in and anchoring it: ``ingest``, ``import-pacs``, ``datasets``, ``register``, ``proof``, ``verify``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from node.cli.common import inputs_exist, open_node, out, settings
from node.errors import NodeConfigError
from node.exit_codes import ExitCode


class BurnedIn(StrEnum):
    """What ingest does with a DICOM image that declares burned-in annotation."""

    #: Quarantine it (the text in the pixels may name the patient).
    REFUSE = "refuse"
    #: Keep it, flagged in the catalog and the report.
    FLAG = "flag"


@inputs_exist("paths", "labels")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files and folders (recursive)")],
    labels: Annotated[Path | None, typer.Option(help="CSV sidecar: file,label[,patient_id]")] = None,
    patient: Annotated[str | None, typer.Option(help="local patient id for objects naming none")] = None,
    burned_in: Annotated[BurnedIn, typer.Option(help="burned-in annotation: refuse or flag")] = BurnedIn.REFUSE,
    keep_bad: Annotated[bool, typer.Option(help="copy bad files to the quarantine instead of moving them")] = False,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: one per CPU, at least 2; 1: none, "
                                                     "for debugging)")] = None,
    file_timeout: Annotated[float, typer.Option(help="seconds (plus one per MB) a worker may spend on one file "
                                                     "before it is stopped and the file quarantined")] = 60.0,
) -> None:
    """Validate, de-identify and catalog DICOM, ISMRMRD and sinogram files.

    Every entry not ingested is listed with its reason: quarantined (a bad file, moved to the
    node's quarantine) or skipped (not a regular file, a symbolic link, unreadable: left in place).
    Exit 0: all ingested; 2: some were not; 1: none was.
    """
    from node.deid import DeidPolicy
    from node.ingest import Ingestor, iter_report_lines, read_sidecar

    node = open_node()
    ingestor = Ingestor(node, sidecar=read_sidecar(labels) if labels else None, default_patient=patient,
                        policy=DeidPolicy(burned_in=burned_in.value), keep_bad=keep_bad,
                        workers=workers, file_seconds=file_timeout)
    columns = (TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.description}"))
    with Progress(*columns, console=out(), transient=True) as bar:
        task = bar.add_task("", total=None)
        report = ingestor.run(
            paths, skip=[labels] if labels else [],
            progress=lambda done, total, name: bar.update(task, completed=done, total=total, description=name),
        )
    for line in iter_report_lines(report):
        out().print(line, highlight=False, markup=False)
    raise typer.Exit(report.exit_code)


def import_pacs(
    study: Annotated[list[str] | None, typer.Option(help="StudyInstanceUID to pull (repeatable); default all")] = None,
    patient: Annotated[str | None, typer.Option(help="local patient id for objects naming none")] = None,
) -> None:
    """Pull studies from Orthanc (METAI_NODE_PACS_URL/_USER/_PASSWORD) and ingest them.

    Exit 0: all pulled and ingested; 2: some instances failed to download or were not ingested.
    """
    from node.pacs import INBOX_DIR, OrthancClient, pull_studies

    current = settings()
    if not current.pacs_url:
        raise NodeConfigError("METAI_NODE_PACS_URL is not set; set it to the Orthanc REST URL, e.g. http://pacs:8042")
    password = current.pacs_password.get_secret_value() if current.pacs_password else None
    client = OrthancClient(current.pacs_url, current.pacs_user, password)  # checks the URL before the node opens
    node = open_node()
    from node.ingest import Ingestor, iter_report_lines  # the readers: torch, pydicom, h5py

    inbox = node.dir / INBOX_DIR
    with Progress(TextColumn("pull"), BarColumn(), MofNCompleteColumn(), console=out(), transient=True) as bar:
        task = bar.add_task("", total=None)
        pulled = pull_studies(client, inbox, study_uids=study,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    out().print(f"pulled {len(pulled.downloaded)} instances, {len(pulled.skipped_existing)} already here, "
                f"{len(pulled.failed)} failed")
    for instance, reason in pulled.failed:
        out().print(f"  failed {instance}: {reason}", markup=False)
    report = Ingestor(node, default_patient=patient).run([inbox])
    for line in iter_report_lines(report):
        out().print(line, highlight=False, markup=False)
    raise typer.Exit(report.exit_code if not pulled.failed else max(report.exit_code, ExitCode.PARTIAL))


def datasets() -> None:
    """List registered datasets and the drafts of records not yet registered."""
    node = open_node()
    from node.datasets import list_datasets

    table = Table("name", "kind", "modality", "synthetic", "records", "status", "root")
    for v in list_datasets(node):
        status = f"chain #{v.chain_dataset_id} (block {v.registered_block})" if v.chain_dataset_id else "draft"
        root = f"0x{v.merkle_root[:12]}…" if v.merkle_root else ""
        table.add_row(v.name, v.kind.name or str(int(v.kind)), v.modality, str(v.synthetic), str(v.record_count),
                      status, root)
    out().print(table)


def register(dataset: str) -> None:
    """Anchor the draft DATASET on chain (its Merkle root, count, kind, modality)."""
    node = open_node()
    from node.datasets import register as do_register

    d = do_register(node, dataset)
    out().print(f"registered {d.name}: chain dataset {d.chain_dataset_id}, {d.record_count} records, "
                f"root 0x{d.merkle_root}, block {d.registered_block}")


def proof(dataset: str, record: str) -> None:
    """Print RECORD's leaf and Merkle proof in registered DATASET, and check it on chain (exit 1 if refused)."""
    node = open_node()
    from node.datasets import check_record_proof

    checked = check_record_proof(node, dataset, record)
    out().print(f"leaf 0x{checked.leaf.hex()}", highlight=False)
    for sibling in checked.path:
        out().print(f"proof 0x{sibling.hex()}", highlight=False)
    out().print(f"chain dataset {checked.chain_dataset_id} accepts this proof: {checked.accepted}")
    if not checked.accepted:
        raise typer.Exit(ExitCode.FAILED)


def verify() -> None:
    """Recompute every registered dataset from disk and compare with the chain (exit 1 on a mismatch)."""
    node = open_node()
    from node.datasets import verify as do_verify

    problems = do_verify(node)
    for line in problems:
        out().print(f"[red]mismatch:[/] {escape(line)}", highlight=False)
    if problems:
        raise typer.Exit(ExitCode.FAILED)
    out().print("every registered dataset matches the disk and the chain")
