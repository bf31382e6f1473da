"""The model card's robustness section: the final model across virtual scanners, doses and subgroups.

The evaluation itself is ``tasks.robustness.evaluate_robustness`` (one interface shared with
the robustness work): held-out virtual patients scanned by every scanner profile at several
dose levels, binned by lesion size and contrast and by demographic-like subgroup. This module
only calls it and files its table and heat map into the card. When a build has no
``tasks.robustness`` module the card says so in words; any other failure propagates, so a card
never silently lacks the section.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["HEATMAP_FILE", "NOT_AVAILABLE", "RobustnessSection", "robustness_section"]

NOT_AVAILABLE = "robustness evaluation not available in this build"
HEATMAP_FILE = "robustness-heatmap.png"
_MODULE = "tasks.robustness"


@dataclass(frozen=True)
class RobustnessSection:
    """What the card shows about robustness.

    Attributes:
        available: whether the evaluation ran.
        note: one sentence (the reason when not available).
        report: the report's JSON form (``RobustnessReport.to_json()``), or None.
        table_markdown: the report's markdown table, or "".
        short_table: a few ``(label, value)`` lines for a terminal.
        heatmap: the heat map PNG's file name (next to the card), or None.
    """

    available: bool
    note: str
    report: dict[str, Any] | None
    table_markdown: str
    short_table: list[tuple[str, str]]
    heatmap: str | None


def robustness_section(task: str, weights: list[np.ndarray], out_dir: Path, *, seed: int,
                       patients_per_cell: int = 0) -> RobustnessSection:
    """Evaluate the final model's robustness and write its heat map into ``out_dir``.

    Parameters:
        task: the study's task code.
        weights: the final model's weight arrays.
        out_dir: the folder of the card; the heat map is written there as ``robustness-heatmap.png``.
        seed: seed of the held-out virtual patients (different from every hospital's data).
        patients_per_cell: virtual patients per table cell; 0 takes the evaluation's default.

    Returns:
        The section; ``available`` is False only when ``tasks.robustness`` does not exist.

    Raises:
        Whatever the evaluation raises: a broken evaluation is an error, not a missing section.
    """
    try:
        module = importlib.import_module(_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != _MODULE:
            raise  # the module exists but one of its own imports is missing: a broken build
        return RobustnessSection(False, NOT_AVAILABLE, None, "", [("robustness", NOT_AVAILABLE)], None)
    options: dict[str, Any] = {"seed": seed}
    if patients_per_cell > 0:
        options["patients_per_cell"] = patients_per_cell
    report = module.evaluate_robustness(task, weights, **options)
    report.heatmap_png(out_dir / HEATMAP_FILE)
    short = [(str(label), str(value)) for label, value in report.short_table()]
    return RobustnessSection(True, f"{len(report.cells)} cells evaluated", report.to_json(), report.to_markdown(),
                             short, HEATMAP_FILE)
