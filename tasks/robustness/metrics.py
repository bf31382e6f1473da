"""Detection metrics of a robustness cell: accuracy, sensitivity, specificity, AUC and its CI.

The AUC is the Mann-Whitney probability that a random patient with a lesion scores above a
random patient without (ties count one half). Its confidence interval comes from a seeded,
stratified, patient-level (cluster) bootstrap: patients with and without a lesion are
resampled separately, with replacement, and every scan of a drawn patient comes along. A
cell that pools several scans of one patient (the same patient on four scanners) therefore
gets an interval as wide as its number of patients warrants, not its number of scans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tasks.errors import TaskDataError

__all__ = ["BOOTSTRAP_RESAMPLES", "CellMetrics", "auc", "auc_interval", "cell_metrics"]

BOOTSTRAP_RESAMPLES = 2000
"""Bootstrap resamples behind every AUC interval."""
_CONFIDENCE = 0.95

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CellMetrics:
    """What a robustness cell reports. Rates are NaN where undefined (no lesion, no healthy).

    Attributes:
        n: scans in the cell.
        n_positive: scans with a lesion.
        n_negative: scans without.
        accuracy: share of scans classified right (logit > 0 means "lesion").
        sensitivity: share of scans with a lesion classified "lesion".
        specificity: share of scans without a lesion classified "no lesion".
        auc: area under the ROC curve of the logits.
        auc_ci_low: lower end of the 95 % bootstrap interval of the AUC.
        auc_ci_high: upper end.
    """

    n: int
    n_positive: int
    n_negative: int
    accuracy: float
    sensitivity: float
    specificity: float
    auc: float
    auc_ci_low: float
    auc_ci_high: float


def _check(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[Floats, npt.NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 1 or y.shape != s.shape:
        raise TaskDataError(f"scores {s.shape} and labels {y.shape} must be two arrays of one length")
    if not np.isfinite(s).all():
        raise TaskDataError("scores hold NaN or infinite values; check the model's weights")
    if not np.isin(y, (0, 1)).all():
        raise TaskDataError("labels must be 0 (no lesion) or 1 (lesion)")
    return s, y.astype(bool)


def auc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Return the area under the ROC curve: P(score of a lesion > score of a healthy scan).

    Ties count one half (the Mann-Whitney U statistic over ``n_pos * n_neg``).

    Parameters:
        scores: one score per scan; higher means "lesion" (logits).
        labels: 1 for a lesion, 0 for none.

    Returns:
        The AUC in [0, 1], or NaN when either class is missing.

    Raises:
        TaskDataError: mismatched lengths, non-finite scores or labels other than 0 / 1.
    """
    s, y = _check(scores, labels)
    weights = np.ones((1, s.size))
    return float(_weighted_auc(s, y, weights)[0])


def _weighted_auc(s: Floats, y: npt.NDArray[np.bool_], weights: Floats) -> Floats:
    """Return the AUC for each row of ``weights`` (copies of each scan), shape ``(resamples,)``."""
    values, index = np.unique(s, return_inverse=True)
    neg = np.zeros((s.size, values.size))
    neg[np.flatnonzero(~y), index[~y]] = 1.0
    neg_weight = weights @ neg  # (resamples, distinct values): healthy weight at each score
    below = np.cumsum(neg_weight, axis=1) - neg_weight
    pos = np.flatnonzero(y)
    wins = (weights[:, pos] * (below[:, index[pos]] + 0.5 * neg_weight[:, index[pos]])).sum(axis=1)
    pairs = weights[:, pos].sum(axis=1) * weights[:, ~y].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out: Floats = np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1.0), np.nan)
    return out


def auc_interval(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    patients: npt.ArrayLike,
    *,
    seed: int,
    resamples: int = BOOTSTRAP_RESAMPLES,
) -> tuple[float, float]:
    """Return the 95 % stratified patient-level bootstrap percentile interval of the AUC.

    Parameters:
        scores: one score per scan (logits).
        labels: 1 for a lesion, 0 for none; every scan of a patient has the patient's label.
        patients: the patient each scan belongs to (any hashable ids).
        seed: seed of the resampling; the same inputs and seed give the same interval.
        resamples: bootstrap resamples, >= 100.

    Returns:
        ``(low, high)``; NaN when either class is missing.

    Raises:
        TaskDataError: mismatched lengths, non-finite scores, labels other than 0 / 1, a
            patient with scans of both labels, or fewer than 100 resamples.
    """
    s, y = _check(scores, labels)
    ids = np.asarray(patients)
    if ids.shape != s.shape:
        raise TaskDataError(f"patients {ids.shape} must give one patient per score {s.shape}")
    if resamples < 100:
        raise TaskDataError(f"resamples is {resamples}, expected at least 100")
    if y.all() or not y.any():
        return (math.nan, math.nan)
    unique, owner = np.unique(ids, return_inverse=True)
    label_of = np.zeros(unique.size, dtype=int)
    np.maximum.at(label_of, owner, y.astype(int))
    if (label_of[owner] != y).any():
        raise TaskDataError("a patient has scans with and without a lesion; one label per patient is expected")
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, unique.size))
    # Stratified: each resample keeps the numbers of patients with and without a lesion.
    for group in (np.flatnonzero(label_of == 1), np.flatnonzero(label_of == 0)):
        counts[:, group] = rng.multinomial(group.size, np.full(group.size, 1.0 / group.size), size=resamples)
    aucs = _weighted_auc(s, y, counts[:, owner])
    tail = (1 - _CONFIDENCE) / 2
    low, high = np.quantile(aucs, [tail, 1 - tail])
    return (float(low), float(high))


def cell_metrics(scores: npt.ArrayLike, labels: npt.ArrayLike, patients: npt.ArrayLike, *, seed: int) -> CellMetrics:
    """Return every metric of one cell; a positive score (logit > 0) means "lesion".

    Raises:
        TaskDataError: as :func:`auc_interval`, or an empty cell.
    """
    s, y = _check(scores, labels)
    if s.size == 0:
        raise TaskDataError("the cell holds no scans; every cell needs at least one")
    predicted = s > 0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    low, high = auc_interval(s, y, patients, seed=seed)
    return CellMetrics(
        n=int(s.size),
        n_positive=n_pos,
        n_negative=n_neg,
        accuracy=float((predicted == y).mean()),
        sensitivity=float(predicted[y].mean()) if n_pos else math.nan,
        specificity=float((~predicted[~y]).mean()) if n_neg else math.nan,
        auc=auc(s, y),
        auc_ci_low=low,
        auc_ci_high=high,
    )
