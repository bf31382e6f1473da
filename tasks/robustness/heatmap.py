"""The robustness heat maps as one PNG: AUC per scanner x level, sensitivity per lesion bin."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tasks.robustness.report import RobustnessReport

__all__ = ["write_heatmap"]

_NAN_TEXT = "n/a"


def _annotate(ax: object, values: np.ndarray, texts: list[list[str]], vmin: float, vmax: float) -> None:
    for r, row in enumerate(texts):
        for c, text in enumerate(row):
            v = (values[r, c] - vmin) / (vmax - vmin)
            # viridis runs from dark blue to light yellow: black text on its upper half.
            colour = "black" if math.isfinite(v) and v > 0.5 else "white"
            ax.text(c, r, text, ha="center", va="center", fontsize=7, color=colour)  # type: ignore[attr-defined]


def write_heatmap(report: RobustnessReport, path: Path) -> None:
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
