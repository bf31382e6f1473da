"""The studies naming this hospital: ``studies``, ``approve``, ``decline``, ``publish-proofs``, ``cohort-manifest``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from node.cli.common import open_node, out
from node.exit_codes import ExitCode

if TYPE_CHECKING:
    from node.study_review import CohortPreview, StudyView

YesOption = Annotated[bool, typer.Option("--yes", help="do not ask")]


def _short(value: str) -> str:
    return value if len(value) <= 14 else f"{value[:6]}…{value[-4:]}"


def _privacy(budget: int) -> str:
    from node.study_review import epsilon

    eps = epsilon(budget)
    return "none (no differential privacy)" if eps is None else f"epsilon {eps:g} for the whole study"


def _not_in_cohort(preview: CohortPreview, sep: str = ", ") -> str:
    reasons = [f"{n} {name.replace('_', ' ')}" for name, n in preview.reasons().items() if n]
    return sep.join(reasons) or "none"


def _describe(view: StudyView, preview: CohortPreview) -> list[str]:
    from node.study_review import kinds_words, purpose_words

    s = view.record
    me = view.hospital.lower()
    hospitals = ", ".join(f"{h} (this hospital)" if h.lower() == me else h for h in view.hospitals)
    return [
        f"study {s.study_id}, requested in block {s.requested_at_block} by researcher {s.researcher}",
        f"  purpose:    {purpose_words(s.purpose, s.disease)}",
        f"  data kinds: {kinds_words(s.kinds)}",
        f"  hospitals:  {hospitals}",
        f"  rounds:     {s.rounds}",
        f"  privacy:    {_privacy(s.privacy_budget)}",
        f"  task code:  {_short('0x' + s.task_code_hash.hex())}",
        f"  status:     {s.status.name.lower()}; this hospital's decision: {view.decision.name.lower()}",
        f"  cohort now: {preview.in_cohort} of this node's {preview.records} records of these kinds "
        f"(block {preview.block}); not in it: {_not_in_cohort(preview)}",
    ]


def _decide(study_id: int, approve: bool, yes: bool) -> None:
    node = open_node()
    from node.study_review import cohort_preview, study_to_decide

    view = study_to_decide(node, study_id)  # refuses an absent, foreign or decided study in one line
    for line in _describe(view, cohort_preview(node, view)):
        out().print(line, markup=False, highlight=False)
    if not yes and not typer.confirm(f"{'Approve' if approve else 'Decline'} study {study_id}?"):
        raise typer.Exit(ExitCode.FAILED)
    studies = node.exchange.studies
    tx = studies.approve(node.account, study_id) if approve else studies.decline(node.account, study_id)
    out().print(f"{'approved' if approve else 'declined'} study {study_id} in block {tx.block_number}")


def approve(study: int, yes: YesOption = False) -> None:
    """Show STUDY in plain words with its cohort preview, then approve it on chain (the data committee's decision)."""
    _decide(study, True, yes)


def decline(study: int, yes: YesOption = False) -> None:
    """Show STUDY in plain words with its cohort preview, then decline it on chain."""
    _decide(study, False, yes)


def studies(
    all_: Annotated[bool, typer.Option("--all", help="every study naming this hospital, decided ones too")] = False,
    json_: Annotated[bool, typer.Option("--json", help="print a JSON document (docs/node.md) instead of a table")]
    = False,
) -> None:
    """List the studies on chain naming this hospital: by default those awaiting its decision, with a cohort preview.

    The preview counts this node's records of the study's kinds in its cohort now (enrolled,
    consenting patients) and, for the others, why not.
    """
    node = open_node()
    from node.study_review import cohort_preview, kinds_words, purpose_words, studies_json, studies_naming

    block, views = studies_naming(node, decided=all_)
    items = [(view, cohort_preview(node, view) if view.pending else None) for view in views]
    if json_:
        typer.echo(json.dumps(studies_json(node, block, items), indent=2))
        return
    if not items:
        which = "names" if all_ else "awaits the decision of"
        hint = "" if all_ else " (--all lists the decided ones too)"
        out().print(f"no study {which} {node.info.hospital_name} ({node.address}) at block {block}{hint}",
                    markup=False)
        return
    # Few, narrow columns, reasons one per line: the table stays readable in 80 columns. The rest
    # (researcher, hospitals, rounds, privacy, task) is shown by `approve` / `decline` and in --json.
    columns = ["study", "purpose", "data kinds", *(["status", "decision"] if all_ else []), "cohort now",
               "not in cohort"]
    table = Table(*columns, box=box.SIMPLE_HEAD,
                  title=f"studies naming {escape(node.info.hospital_name)} ({node.address}) at block {block}")
    for view, preview in items:
        s = view.record
        decided = [s.status.name.lower(), view.decision.name.lower()] if all_ else []
        table.add_row(str(s.study_id), purpose_words(s.purpose, s.disease), kinds_words(s.kinds), *decided,
                      f"{preview.in_cohort} of {preview.records}" if preview else "-",
                      _not_in_cohort(preview, "\n") if preview else "-")
    out().print(table)


def publish_proofs(
    study: Annotated[int | None, typer.Option("--study", help="only this study's rounds")] = None,
    sealed: Annotated[bool | None, typer.Option(
        "--sealed/--plain", help="seal each patient's proofs to their own key, or publish them plain "
                                 "(default: METAI_NODE_PROOF_MODE; --plain is refused on a node set to sealed)",
        show_default=False)] = None,
) -> None:
    """Publish each trained round's cohort proofs to the coordinator, for the patients in it.

    Every kept round not yet published goes to METAI_NODE_COORDINATOR_URL, signed in with the
    hospital's key; each patient can then see, and check on chain, that their records were used.
    Sealed, the coordinator holds only envelopes it cannot open or link to a patient.
    """
    from node.cli.common import settings
    from node.errors import NodeConfigError
    from node.sealed_publish import proof_mode

    current = settings()
    mode = proof_mode(current.proof_mode, sealed)
    url = current.coordinator_url
    if url is None:
        raise NodeConfigError("METAI_NODE_COORDINATOR_URL is not set: give the coordinator service's URL")
    node = open_node()
    from node.proof_publish import CoordinatorClient, publish_kept
    from node.sealed_publish import publish_sealed

    client = CoordinatorClient(url, node.account)
    try:
        client.sign_in()
        done = publish_sealed(node, client, study) if mode == "sealed" else publish_kept(node.dir, client, study)
    finally:
        client.close()
    for published in done:
        what = f"{published.records} proofs for {published.patients} patients"
        if mode == "sealed":
            what = f"{published.records} proofs sealed to {published.patients} patients"
        out().print(f"study {published.study_id} round {published.round}: {what} published")
    if not done:
        out().print(f"nothing to publish: every kept round is published{' sealed' if mode == 'sealed' else ''}")


def cohort_manifest(
    study: Annotated[int, typer.Option("--study", help="the study's id on chain")],
    round_: Annotated[int, typer.Option("--round", help="a round this node trained and anchored")],
    out_file: Annotated[Path | None, typer.Option("--out", help="write it to this file (default: print it)")] = None,
) -> None:
    """Write the cohort manifest of a round this node trained (format metai-cohort/1, docs/formats/lineage-bundle.md).

    It is the manifest the node sent with the round's reply (in sealed mode, whose hash it sent), byte
    for byte as kept then: the records trained on with their dataset proofs, and each patient's signed
    enrolment. For a round anchored before the node kept manifests, it is made again from the kept
    cohort (and may differ from what was sent if a patient enrolled again since).
    """
    node = open_node()
    from node.kept_cohort import read_kept_cohort
    from node.lineage import kept_manifest, manifest_json, read_sent_manifest

    kept = read_kept_cohort(node.dir, study, round_)  # only a round the node anchored has a manifest
    text = read_sent_manifest(node.dir, study, round_)
    if text is None:
        text = manifest_json(kept_manifest(node, kept))
        typer.echo(f"study {study} round {round_}: no manifest was kept as sent (a round anchored by an earlier "
                   "version); this one is made again from the kept cohort", err=True)
    if out_file is None:
        typer.echo(text)
        return
    out_file.write_text(text, encoding="utf-8")
    out().print(f"wrote the cohort manifest of study {study} round {round_} to {out_file}", markup=False,
                highlight=False)
