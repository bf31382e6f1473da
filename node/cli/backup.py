"""Keeping what cannot be lost: ``backup``, ``restore``."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from node.cli.common import out, passphrase, settings
from node.config import NodeInfo
from node.errors import NodeConfigError
from node.exit_codes import ExitCode

if TYPE_CHECKING:  # node.backup reaches the cohort and so the chain's libraries: not at every command's start
    from node.backup import Progress as Report


@contextmanager
def _bar() -> Iterator[Report]:
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out(), transient=True) as bar:
        task = bar.add_task("", total=None)
        yield lambda phase, done, total: bar.update(task, description=phase, completed=done, total=total)


def backup(
    out_file: Annotated[Path, typer.Option("--out", help="the archive to write (a new file; never overwritten)")],
) -> None:
    """Back the node (METAI_NODE_DIR) up into one archive, while it may be serving.

    Holds the node's state that cannot be made again: node.json, the deployment manifest copy,
    the hospital key and the node secrets (encrypted as on disk), a catalog snapshot (SQLite's
    backup API), the store's records, the SuperNode key pair (unencrypted, as Flower reads it:
    keep the archive as you keep keys) and the kept cohorts. Needs no passphrase.
    Exit 0: everything backed up; 2: some records could not be (listed, with the reason).
    """
    from node.backup_archive import make_backup

    current = settings()
    try:
        NodeInfo.load(current.dir)
    except NodeConfigError as exc:
        raise NodeConfigError(f"{exc}; the node directory is METAI_NODE_DIR") from None
    with _bar() as report:
        result = make_backup(current.dir, out_file, report)
    manifest = result.manifest
    say = functools.partial(out().print, markup=False, highlight=False)
    counts = manifest.catalog
    say(f"backed up {manifest.hospital_name} ({manifest.hospital_address}, chain {manifest.chain_id}): "
        f"{len(manifest.files)} files, {manifest.total_bytes:,} bytes; catalog: {counts.get('records', 0)} records, "
        f"{counts.get('patients', 0)} patients, {counts.get('datasets', 0)} datasets")
    say(f"archive {result.path}: {result.size:,} bytes, SHA-256 {result.sha256} (keep this hash apart from the "
        "archive, to check a copy before restoring it)")
    damaged = [x for x in manifest.left_out if x.path.startswith("store/") and not x.path.endswith("/")]
    for item in manifest.left_out:
        typer.echo(f"{'not backed up' if item in damaged else 'left out'}: {item.path}: {item.reason}", err=True)
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo("the archive holds federation/supernode.key unencrypted and the catalog in clear: keep it as you keep "
               "the node's keys (docs/node.md#backup-and-restore)", err=True)
    if damaged:
        raise typer.Exit(ExitCode.PARTIAL)


def restore(
    archive: Annotated[Path, typer.Argument(help="the archive `metai-node backup` wrote")],
    node_dir: Annotated[Path | None, typer.Option("--dir", help="the node directory to create (new or empty; "
                                                                "default METAI_NODE_DIR)")] = None,
    check_passphrase: Annotated[bool, typer.Option(
        "--check-passphrase", help="check that the node passphrase (METAI_NODE_PASSPHRASE, or asked) unlocks the "
                                   "backup's key and secrets")] = False,
) -> None:
    """Restore a node from its backup into a new directory, every file checked against the manifest.

    A damaged, truncated or altered archive is refused and nothing is written.
    """
    from node.restore import restore as restore_node

    current = settings()
    target = node_dir if node_dir is not None else current.dir
    secret = passphrase(current) if check_passphrase else None
    with _bar() as report:
        result = restore_node(archive, target, passphrase=secret, progress=report)
    manifest = result.manifest
    say = functools.partial(out().print, markup=False, highlight=False)
    say(f"restored {manifest.hospital_name} ({manifest.hospital_address}, chain {manifest.chain_id}) into "
        f"{result.node_dir}: {len(manifest.files)} files checked, backup made {manifest.created_at}")
    if result.passphrase_checked:
        say("the passphrase unlocks the hospital key and the node secrets")
    for item in manifest.left_out:
        if item.path.startswith("store/") and not item.path.endswith("/"):
            typer.echo(f"not in the backup: {item.path}: {item.reason}", err=True)
    say(f"next: set METAI_NODE_DIR={result.node_dir} (and the SuperNode's node-dir and the signing agent's "
        "--node-dir), then run `metai-node status` and `metai-node verify`")
