"""The data committee's decision on a study: ``approve``, ``decline``."""

from __future__ import annotations

from typing import Annotated

import typer

from node.cli.common import open_node, out
from node.exit_codes import ExitCode

YesOption = Annotated[bool, typer.Option("--yes", help="do not ask")]


def _decide(study_id: int, approve: bool, yes: bool) -> None:
    node = open_node()
    studies = node.exchange.studies
    s = studies.study(study_id)
    out().print(f"study {study_id}: {s.kinds!r} for {s.purpose.name}"
                f"{f':{s.disease}' if s.disease else ''}, {s.rounds} rounds, researcher {s.researcher}, "
                f"status {s.status.name}")
    if not yes and not typer.confirm(f"{'Approve' if approve else 'Decline'} study {study_id}?"):
        raise typer.Exit(ExitCode.FAILED)
    tx = studies.approve(node.account, study_id) if approve else studies.decline(node.account, study_id)
    out().print(f"{'approved' if approve else 'declined'} study {study_id} in block {tx.block_number}")


def approve(study: int, yes: YesOption = False) -> None:
    """Approve STUDY on chain (the data committee's decision)."""
    _decide(study, True, yes)


def decline(study: int, yes: YesOption = False) -> None:
    """Decline STUDY on chain."""
    _decide(study, False, yes)
