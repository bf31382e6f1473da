"""The robustness report: per-scan scores, the metric cells, and their table, JSON and heat map."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.errors import TaskError

__all__ = ["CellNotFoundError", "RobustnessCell", "RobustnessReport", "ScanScore"]


class CellNotFoundError(TaskError, KeyError):
    """A report has no cell of the requested dimension and level (the message lists them)."""

    def __str__(self) -> str:
        # KeyError would print the repr of its argument, quotes and all.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ScanScore:
    """The model's answer on one scan of one held-out patient.

    Attributes:
        patient: the patient's index in the cohort.
        scanner: scanner profile (CT) or coil array (MR).
        level: dose or noise level, as :attr:`Condition.level` names it.
        label: 1 when the patient has a lesion.
        score: the model's logit (> 0: "lesion").
        radius_mm: lesion radius, mm (NaN without a lesion).
        contrast_hu: lesion contrast above brain, HU (NaN without a lesion).
        sex: ``"female"`` or ``"male"``.
        age_years: age, years.
        head_scale: head size factor.
    """

    patient: int
    scanner: str
    level: str
    label: int
    score: float
    radius_mm: float
    contrast_hu: float
    sex: str
    age_years: float
    head_scale: float


@dataclass(frozen=True)
class RobustnessCell:
    """One row of the robustness table (rates NaN where a class is missing).

    Attributes:
        dimension: what the cells of this kind vary (``"scanner"``, ``"lesion radius"``...).
        level: this cell's value of it (``"compact-head"``, ``"3-6 mm"``...).
        n: scans in the cell; ``n_positive`` with a lesion, ``n_negative`` without.
        accuracy: share classified right at logit 0.
        sensitivity: share of lesion scans called "lesion".
        specificity: share of healthy scans called "no lesion".
        auc: area under the ROC curve.
        auc_ci_low: lower end of its 95 % interval (patient-level bootstrap).
        auc_ci_high: upper end.
    """

    dimension: str
    level: str
    n: int
    n_positive: int
    n_negative: int
    accuracy: float
    sensitivity: float
    specificity: float
    auc: float
    auc_ci_low: float
    auc_ci_high: float


def _plain(value: Any) -> Any:
    """Return ``value`` with NaN as None, so the JSON is valid."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2f}"


@dataclass(frozen=True)
class RobustnessReport:
    """How a model behaves across virtual scanners, acquisition levels, lesions and subgroups.

    Attributes:
        task: the task code.
        weights_hash: ``tasks.weights_hash`` of the evaluated weights, hex with ``0x``.
        seed: seed of patients, noise and bootstrap.
        patients: held-out patients, each scanned under every condition.
        scanners: the scanners, in order.
        levels: the acquisition levels, in order.
        level_dimension: ``"dose"`` (CT) or ``"noise"`` (MR).
        method: how the cells and intervals were made, one paragraph.
        cells: the table's rows.
        scans: every scan's score, for recomputation.
    """

    task: str
    weights_hash: str
    seed: int
    patients: int
    scanners: tuple[str, ...]
    levels: tuple[str, ...]
    level_dimension: str
    method: str
    cells: tuple[RobustnessCell, ...]
    scans: tuple[ScanScore, ...]

    def cell(self, dimension: str, level: str) -> RobustnessCell:
        """Return the cell ``(dimension, level)``.

        Raises:
            CellNotFoundError: no such cell; the message lists the levels of ``dimension``, or
                the dimensions when there is none of that name. Empty bins have no cell.
        """
        for c in self.cells:
            if c.dimension == dimension and c.level == level:
                return c
        levels = [c.level for c in self.cells if c.dimension == dimension]
        if levels:
            raise CellNotFoundError(f"no cell {level!r} in dimension {dimension!r}; its cells: {', '.join(levels)}")
        dimensions = ", ".join(dict.fromkeys(c.dimension for c in self.cells))
        raise CellNotFoundError(f"no dimension {dimension!r} in the report; its dimensions: {dimensions}")

    def grid_dimension(self) -> str:
        """Return the name of the scanner-by-level cells, e.g. ``"scanner x dose"``."""
        return f"scanner x {self.level_dimension}"

    def to_json(self) -> dict[str, Any]:
        """Return the whole report as JSON-ready data (NaN as null)."""
        head = {
            "task": self.task,
            "weights_hash": self.weights_hash,
            "seed": self.seed,
            "patients": self.patients,
            "scanners": list(self.scanners),
            "levels": list(self.levels),
            "level_dimension": self.level_dimension,
            "method": self.method,
        }
        cells = [{k: _plain(v) for k, v in asdict(c).items()} for c in self.cells]
        scans = [{k: _plain(v) for k, v in asdict(s).items()} for s in self.scans]
        return {**head, "cells": cells, "scans": scans}

    def to_markdown(self) -> str:
        """Return the cells as a Markdown table."""
        lines = [
            "| dimension | level | n (lesion / none) | accuracy | sensitivity | specificity | AUC [95 % CI] |",
            "|---|---|---|---|---|---|---|",
        ]
        for c in self.cells:
            lines.append(
                f"| {c.dimension} | {c.level} | {c.n} ({c.n_positive} / {c.n_negative}) | {_fmt(c.accuracy)} | "
                f"{_fmt(c.sensitivity)} | {_fmt(c.specificity)} | "
                f"{_fmt(c.auc)} [{_fmt(c.auc_ci_low)}, {_fmt(c.auc_ci_high)}] |"
            )
        return "\n".join(lines) + "\n"

    def short_table(self) -> list[tuple[str, str]]:
        """Return a few ``(what, figures)`` lines: overall, each scanner and level, the gaps.

        The gap lines name, for each subgroup dimension and lesion bins, the lowest and
        highest AUC, so a difference between groups shows at a glance.
        """

        def figures(c: RobustnessCell) -> str:
            return f"AUC {_fmt(c.auc)} [{_fmt(c.auc_ci_low)}, {_fmt(c.auc_ci_high)}], accuracy {_fmt(c.accuracy)}"

        out = [("all scans", figures(self.cell("all", "all scans")))]
        out += [(f"scanner {s}", figures(self.cell("scanner", s))) for s in self.scanners]
        out += [(level, figures(self.cell(self.level_dimension, level))) for level in self.levels]
        for dimension in ("lesion radius", "lesion contrast", "sex", "age", "head size"):
            group = [c for c in self.cells if c.dimension == dimension and math.isfinite(c.auc)]
            if len(group) >= 2:
                low = min(group, key=lambda c: c.auc)
                high = max(group, key=lambda c: c.auc)
                out.append(
                    (f"{dimension} gap", f"AUC {_fmt(low.auc)} ({low.level}) to {_fmt(high.auc)} ({high.level})")
                )
        return out

    def heatmap_png(self, path: Path) -> None:
        """Write the heat maps: AUC per scanner and level, sensitivity per lesion radius and contrast.

        Parameters:
            path: the ``.png`` to write; its folder must exist.
        """
        _write_heatmap(self, path)


# ---------------------------------------------------------------- the heat maps (matplotlib, Agg)

_NAN_TEXT = "n/a"


def _annotate(ax: object, values: np.ndarray, texts: list[list[str]], vmin: float, vmax: float) -> None:
    for r, row in enumerate(texts):
        for c, text in enumerate(row):
            v = (values[r, c] - vmin) / (vmax - vmin)
            # viridis runs from dark blue to light yellow: black text on its upper half.
            colour = "black" if math.isfinite(v) and v > 0.5 else "white"
            ax.text(c, r, text, ha="center", va="center", fontsize=7, color=colour)  # type: ignore[attr-defined]


def _write_heatmap(report: RobustnessReport, path: Path) -> None:
    """Write the report's two heat maps side by side to ``path`` (PNG, matplotlib Agg).

    Left: AUC (with its 95 % interval) of every scanner at every level. Right: sensitivity
    for each lesion radius x contrast bin, all conditions pooled (n/a: no lesion there).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tasks.robustness.cohort import CONTRAST_BINS, RADIUS_BINS

    grid = report.grid_dimension()
    auc = np.full((len(report.scanners), len(report.levels)), np.nan)
    auc_text = [[_NAN_TEXT] * len(report.levels) for _ in report.scanners]
    for r, scanner in enumerate(report.scanners):
        for c, level in enumerate(report.levels):
            cell = report.cell(grid, f"{scanner}, {level}")
            auc[r, c] = cell.auc
            if math.isfinite(cell.auc):
                auc_text[r][c] = f"{cell.auc:.2f}\n[{cell.auc_ci_low:.2f}, {cell.auc_ci_high:.2f}]"
    radius_levels = [f"{lo:g}-{hi:g} mm" for lo, hi in RADIUS_BINS]
    contrast_levels = [f"{lo:g}-{hi:g} HU" for lo, hi in CONTRAST_BINS]
    sens = np.full((len(radius_levels), len(contrast_levels)), np.nan)
    sens_text = [[_NAN_TEXT] * len(contrast_levels) for _ in radius_levels]
    present = {c.level: c for c in report.cells if c.dimension == "lesion radius x contrast"}
    for r, rl in enumerate(radius_levels):
        for c, cl in enumerate(contrast_levels):
            found = present.get(f"{rl}, {cl}")
            if found is not None and math.isfinite(found.sensitivity):
                sens[r, c] = found.sensitivity
                sens_text[r][c] = f"{found.sensitivity:.2f}\n({found.n_positive} scans)"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.2, 1]})
    try:
        cmap = plt.get_cmap("viridis").with_extremes(bad="#bbbbbb")
        image = left.imshow(np.ma.masked_invalid(auc), vmin=0.5, vmax=1.0, cmap=cmap, aspect="auto")
        left.set_xticks(range(len(report.levels)), report.levels)
        left.set_yticks(range(len(report.scanners)), report.scanners)
        left.set_title(f"AUC [95 % CI], {report.patients} patients per cell")
        _annotate(left, auc, auc_text, 0.5, 1.0)
        fig.colorbar(image, ax=left, fraction=0.046)
        image = right.imshow(np.ma.masked_invalid(sens), vmin=0.0, vmax=1.0, cmap=cmap, aspect="auto")
        right.set_xticks(range(len(contrast_levels)), contrast_levels)
        right.set_yticks(range(len(radius_levels)), radius_levels)
        right.set_xlabel("lesion contrast above brain")
        right.set_ylabel("lesion radius")
        right.set_title("sensitivity (lesion scans), all conditions pooled")
        _annotate(right, sens, sens_text, 0.0, 1.0)
        fig.colorbar(image, ax=right, fraction=0.046)
        fig.suptitle(f"{report.task}: model {report.weights_hash[:12]}... across virtual scanners")
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=110)
    finally:
        plt.close(fig)
