"""``metai-node``: the hospital node's command line.

Every command runs inside one error boundary (:mod:`node.cli_boundary`): whatever goes wrong
ends as one ``error: ...`` line on stderr and a non-zero exit code, never a traceback or a
secret. Heavy modules (web3, SQLAlchemy, the readers) are imported inside the commands, so a
command refused for its settings answers at once.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from contracts.errors import ChainError, ChainUnavailable, InvalidRpcUrl
from node.cli_boundary import Boundary
from node.config import NodeInfo, NodeSettings
from node.errors import KeyStoreError, NodeConfigError, NodeError

if TYPE_CHECKING:
    from node.node import Node

F = TypeVar("F", bound=Callable[..., Any])


def _hint(exc: BaseException) -> str | None:
    """What to do about an error whose message cannot know which setting is behind it."""
    if isinstance(exc, ChainUnavailable | InvalidRpcUrl):
        return "check METAI_NODE_RPC_URL, or the rpc_url `metai-node init` recorded in the node's node.json"
    if isinstance(exc, KeyStoreError) and "wrong passphrase" in str(exc):
        return "set METAI_NODE_PASSPHRASE to the passphrase given to `metai-node init`"
    return None


BOUNDARY = Boundary(settings=(NodeSettings,), hints=(_hint,))
app = typer.Typer(help="MeTAI hospital node.", no_args_is_help=True, add_completion=False, cls=BOUNDARY.group(),
                  pretty_exceptions_show_locals=False)


def _out() -> Console:
    # A console per call binds to the current stdout (so output can be captured and redirected).
    return Console(soft_wrap=True)


def _settings() -> NodeSettings:
    return NodeSettings()


def _passphrase(settings: NodeSettings, *, confirm: bool = False) -> str:
    if settings.passphrase is None and _out().is_terminal:
        value = typer.prompt("Node passphrase", hide_input=True, confirmation_prompt=confirm)
        settings = settings.model_copy(update={"passphrase": value})
    return settings.require_passphrase()


def _open() -> Node:
    """The node of METAI_NODE_DIR, its passphrase checked (a wrong one is refused before any work)."""
    settings = _settings()
    try:
        NodeInfo.load(settings.dir)  # a missing node directory is named before any passphrase is asked for
    except NodeConfigError as exc:
        raise NodeConfigError(f"{exc}; the node directory is METAI_NODE_DIR") from None
    passphrase = _passphrase(settings)
    from node.node import Node  # web3, SQLAlchemy: only once the settings are right

    node = Node(settings.dir, passphrase, rpc_url=settings.rpc_url)
    _ = node.secrets  # unseals the node secrets (scrypt, a tenth of a second): raises KeyStoreError if wrong
    return node


def _fail(exc: Exception) -> typer.Exit:
    """Report an error a command caught itself, as the boundary does; return the Exit to raise."""
    return BOUNDARY.fail(exc)


def _inputs_exist(*names: str) -> Callable[[F], F]:
    """Refuse the command before it starts when a path given in parameter ``names`` does not exist."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command)

        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            for name in names:
                value = bound.arguments.get(name)
                for path in value if isinstance(value, list) else [value]:
                    if path is not None and not Path(path).exists():
                        option = f"--{name.replace('_', '-')}" if name != "paths" else "PATH"
                        raise NodeConfigError(f"{option} {path} does not exist; check the path")
            return command(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


@app.command()
@_inputs_exist("manifest", "key_file")
def init(
    name: Annotated[str, typer.Option(help="the hospital's display name")],
    manifest: Annotated[Path, typer.Option(help="the consortium's deployment manifest")],
    rpc_url: Annotated[str, typer.Option(help="the chain's JSON-RPC URL")] = "",
    key_file: Annotated[Path | None, typer.Option(help="import this hex private key instead of creating one")] = None,
) -> None:
    """Create the node directory (METAI_NODE_DIR) with an encrypted hospital key."""
    from contracts.endpoint import check_rpc_url
    from node.node import Node

    settings = _settings()
    if rpc_url:
        try:
            rpc_url = check_rpc_url(rpc_url)
        except InvalidRpcUrl as exc:
            raise NodeConfigError(f"--rpc-url {exc}") from None
    key = key_file.read_text(encoding="utf-8").strip() if key_file else None
    node = Node.init(settings.dir, hospital_name=name, rpc_url=rpc_url, manifest=manifest,
                     passphrase=_passphrase(settings, confirm=True), private_key=key)
    _out().print(f"node created in {escape(str(node.dir))}; hospital address [bold]{node.address}[/]")
    _out().print("ask the consortium admin to grant this address the HOSPITAL role")


@app.command()
@_inputs_exist("paths", "labels")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files and folders (recursive)")],
    labels: Annotated[Path | None, typer.Option(help="CSV sidecar: file,label[,patient_id]")] = None,
    patient: Annotated[str | None, typer.Option(help="local patient id for objects naming none")] = None,
    burned_in: Annotated[str, typer.Option(help="burned-in annotation: refuse or flag")] = "refuse",
    keep_bad: Annotated[bool, typer.Option(help="copy bad files to the quarantine instead of moving them")] = False,
    workers: Annotated[int | None, typer.Option(help="worker processes (default: one per CPU, at least 2; 1: none, "
                                                     "for debugging)")] = None,
    file_timeout: Annotated[float, typer.Option(help="seconds (plus one per MB) a worker may spend on one file "
                                                     "before it is stopped and the file quarantined")] = 60.0,
) -> None:
    """Validate, de-identify and catalog DICOM, ISMRMRD and sinogram files.

    Every entry not ingested is listed with its reason: quarantined (a bad file, moved to the
    node's quarantine) or skipped (not a regular file, a symbolic link, unreadable: left in place).
    """
    from node.deid import DeidPolicy
    from node.ingest import Ingestor, iter_report_lines, read_sidecar

    if burned_in not in ("refuse", "flag"):
        raise _fail(ValueError(f"--burned-in must be refuse or flag, not {burned_in!r}"))
    try:
        node = _open()
        ingestor = Ingestor(node, sidecar=read_sidecar(labels) if labels else None, default_patient=patient,
                            policy=DeidPolicy(burned_in=burned_in), keep_bad=keep_bad,  # type: ignore[arg-type]
                            workers=workers, file_seconds=file_timeout)
        columns = (TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   TextColumn("{task.description}"))
        with Progress(*columns, console=_out(), transient=True) as bar:
            task = bar.add_task("", total=None)
            report = ingestor.run(
                paths, skip=[labels] if labels else [],
                progress=lambda done, total, name: bar.update(task, completed=done, total=total, description=name),
            )
    except (NodeError, ChainError) as exc:
        raise _fail(exc) from exc
    for line in iter_report_lines(report):
        _out().print(line, highlight=False, markup=False)
    raise typer.Exit(report.exit_code)


@app.command("import-pacs")
def import_pacs(
    study: Annotated[list[str] | None, typer.Option(help="StudyInstanceUID to pull (repeatable); default all")] = None,
    patient: Annotated[str | None, typer.Option(help="local patient id for objects naming none")] = None,
) -> None:
    """Pull studies from Orthanc (METAI_NODE_PACS_URL/_USER/_PASSWORD) and ingest them."""
    from node.pacs import OrthancClient, pull_studies

    settings = _settings()
    if not settings.pacs_url:
        raise NodeConfigError("METAI_NODE_PACS_URL is not set; set it to the Orthanc REST URL, e.g. http://pacs:8042")
    password = settings.pacs_password.get_secret_value() if settings.pacs_password else None
    client = OrthancClient(settings.pacs_url, settings.pacs_user, password)  # checks the URL before the node opens
    node = _open()
    from node.ingest import Ingestor, iter_report_lines  # the readers: torch, pydicom, h5py

    inbox = node.dir / "pacs-inbox"
    with Progress(TextColumn("pull"), BarColumn(), MofNCompleteColumn(), console=_out(), transient=True) as bar:
        task = bar.add_task("", total=None)
        pulled = pull_studies(client, inbox, study_uids=study,
                              progress=lambda done, total: bar.update(task, completed=done, total=total))
    _out().print(f"pulled {len(pulled.downloaded)} instances, {len(pulled.skipped_existing)} already here, "
                  f"{len(pulled.failed)} failed")
    for instance, reason in pulled.failed:
        _out().print(f"  failed {instance}: {reason}", markup=False)
    report = Ingestor(node, default_patient=patient).run([inbox])
    for line in iter_report_lines(report):
        _out().print(line, highlight=False, markup=False)
    raise typer.Exit(report.exit_code if not pulled.failed else max(report.exit_code, 2))


@app.command()
def challenge(local_patient_id: str) -> None:
    """Issue the text a patient signs to enrol (give it to the patient)."""
    node = _open()
    from node.enrol import issue_challenge

    issued = issue_challenge(node, local_patient_id)
    _out().print(issued.text, markup=False, highlight=False)


@app.command()
def enrol(local_patient_id: str, address: str, signature: str) -> None:
    """Link a local patient to ADDRESS, proven by SIGNATURE over their challenge."""
    node = _open()
    from node.enrol import enrol as do_enrol

    pseudonym = do_enrol(node, local_patient_id, address, signature)
    _out().print(f"patient {pseudonym} is now linked to {address}", markup=False)


@app.command()
def datasets() -> None:
    """List registered datasets and the drafts of records not yet registered."""
    node = _open()
    from node.datasets import list_datasets

    table = Table("name", "kind", "modality", "synthetic", "records", "status", "root")
    for v in list_datasets(node):
        status = f"chain #{v.chain_dataset_id} (block {v.registered_block})" if v.chain_dataset_id else "draft"
        root = f"0x{v.merkle_root[:12]}…" if v.merkle_root else ""
        table.add_row(v.name, v.kind.name or str(int(v.kind)), v.modality, str(v.synthetic), str(v.record_count),
                      status, root)
    _out().print(table)


@app.command()
def register(dataset: str) -> None:
    """Anchor the draft DATASET on chain (its Merkle root, count, kind, modality)."""
    node = _open()
    from node.datasets import register as do_register

    d = do_register(node, dataset)
    _out().print(f"registered {d.name}: chain dataset {d.chain_dataset_id}, {d.record_count} records, "
                  f"root 0x{d.merkle_root}, block {d.registered_block}")


@app.command()
def proof(dataset: str, record: str) -> None:
    """Print RECORD's leaf and Merkle proof in registered DATASET, and check it on chain."""
    node = _open()
    from sqlalchemy import select

    from node.catalog import Dataset
    from node.datasets import record_proof

    leaf, path = record_proof(node, dataset, record)
    with node.sessions() as session:
        chain_id = session.scalar(select(Dataset.chain_dataset_id).where(Dataset.name == dataset))
    accepted = node.exchange.datasets.contains_record(chain_id, leaf, path) if chain_id else False
    _out().print(f"leaf 0x{leaf.hex()}", highlight=False)
    for sibling in path:
        _out().print(f"proof 0x{sibling.hex()}", highlight=False)
    _out().print(f"chain dataset {chain_id} accepts this proof: {accepted}")
    if not accepted:
        raise typer.Exit(1)


@app.command()
def verify() -> None:
    """Recompute every registered dataset from disk and compare with the chain."""
    node = _open()
    from node.datasets import verify as do_verify

    problems = do_verify(node)
    for line in problems:
        _out().print(f"[red]mismatch:[/] {escape(line)}", highlight=False)
    if problems:
        raise typer.Exit(1)
    _out().print("every registered dataset matches the disk and the chain")


def _decide(study_id: int, approve: bool, yes: bool) -> None:
    node = _open()
    studies = node.exchange.studies
    s = studies.study(study_id)
    _out().print(f"study {study_id}: {s.kinds!r} for {s.purpose.name}"
                  f"{f':{s.disease}' if s.disease else ''}, {s.rounds} rounds, researcher {s.researcher}, "
                  f"status {s.status.name}")
    if not yes and not typer.confirm(f"{'Approve' if approve else 'Decline'} study {study_id}?"):
        raise typer.Exit(1)
    tx = studies.approve(node.account, study_id) if approve else studies.decline(node.account, study_id)
    _out().print(f"{'approved' if approve else 'declined'} study {study_id} in block {tx.block_number}")


@app.command()
def approve(study: int, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False) -> None:
    """Approve STUDY on chain (the data committee's decision)."""
    _decide(study, True, yes)


@app.command()
def decline(study: int, yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False) -> None:
    """Decline STUDY on chain."""
    _decide(study, False, yes)


@app.command()
def status() -> None:
    """Show the node: hospital, chain, role, records, patients, datasets (exit 1 if the chain is unreachable)."""
    node = _open()
    from sqlalchemy import func, select

    from contracts.datause import Kind
    from contracts.roles import Role
    from node.catalog import Dataset, Patient, Record

    _out().print(f"node {node.dir}: {node.info.hospital_name} ({node.address})", markup=False)
    with node.sessions() as session:
        by_kind = session.execute(select(Record.kind, func.count()).group_by(Record.kind)).all()
        patients = session.scalar(select(func.count()).select_from(Patient)) or 0
        enrolled = session.scalar(select(func.count()).select_from(Patient).where(Patient.address.is_not(None))) or 0
        registered = session.scalar(select(func.count()).select_from(Dataset)) or 0
    counts = ", ".join(f"{Kind(k).name}: {n}" for k, n in by_kind) or "none"
    _out().print(f"records: {counts}; patients: {patients} ({enrolled} enrolled); registered datasets: {registered}")
    holds = node.exchange.roles.has(Role.HOSPITAL, node.address)  # a chain that is down: the boundary's one line
    _out().print(f"chain {escape(node.rpc_url)}: block {node.exchange.chain.block_number}, "
                  f"HOSPITAL role {'held' if holds else '[red]not held[/]'}")


if __name__ == "__main__":
    app()
