"""The ``metai-node`` application: every command, by topic, inside the one error boundary."""

from __future__ import annotations

import importlib.metadata
from typing import Annotated

import typer

from node.cli import backup, data, patients, service, setup, studies
from node.cli.common import BOUNDARY
from node.errors import NodeConfigError

#: The installed distribution whose version ``--version`` prints (``[project] name`` in pyproject.toml).
DISTRIBUTION = "metai-exchange"

app = typer.Typer(help="MeTAI hospital node.", no_args_is_help=True, add_completion=False, cls=BOUNDARY.group(),
                  pretty_exceptions_show_locals=False)


def _print_version(asked: bool) -> None:
    if not asked:
        return
    try:
        version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        # Raised while click parses the options, before the boundary's group runs a command.
        raise BOUNDARY.fail(NodeConfigError(
            f"the {DISTRIBUTION} distribution is not installed, so it has no version; install it "
            "(`pip install -e .` in the source tree, which `make` does)")) from None
    typer.echo(f"metai-node {version}")
    raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="print the installed version and exit")] = False,
) -> None:
    """MeTAI hospital node."""

app.command()(setup.init)
app.command()(data.ingest)
app.command("import-pacs")(data.import_pacs)
app.command()(patients.challenge)
app.command()(patients.enrol)
app.command()(data.datasets)
app.command()(data.register)
app.command()(data.proof)
app.command()(data.verify)
app.command("studies")(studies.studies)
app.command()(studies.approve)
app.command()(studies.decline)
app.command("publish-proofs")(studies.publish_proofs)
app.command("cohort-manifest")(studies.cohort_manifest)
app.command()(setup.status)
app.command("federation-key")(setup.federation_key)
app.command()(backup.backup)
app.command()(backup.restore)
app.command()(service.serve)
app.command()(service.health)
