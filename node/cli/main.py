"""The ``metai-node`` application: every command, by topic, inside the one error boundary."""

from __future__ import annotations

import typer

from node.cli import data, patients, setup, studies
from node.cli.common import BOUNDARY

app = typer.Typer(help="MeTAI hospital node.", no_args_is_help=True, add_completion=False, cls=BOUNDARY.group(),
                  pretty_exceptions_show_locals=False)

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
