"""Robustness metrics against independent computations: Mann-Whitney U, DeLong, coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm

from tasks import TaskDataError
from tasks.robustness import ScanScore, auc, auc_interval, build_cells, cell_metrics


def _delong_interval(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """DeLong's 95 % interval, from the pairwise kernel written out in full (O(n_pos * n_neg))."""
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    theta = kernel.mean()
    v10, v01 = kernel.mean(axis=1), kernel.mean(axis=0)
    variance = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    half = norm.ppf(0.975) * math.sqrt(variance)
    return theta - half, theta + half


@pytest.mark.parametrize("seed", range(5))
def test_auc_is_the_mann_whitney_u_over_the_pairs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 150)
    scores = np.round(rng.normal(size=150) + labels * 0.7, 1)  # rounded: many ties
    u = mannwhitneyu(scores[labels == 1], scores[labels == 0]).statistic
    assert auc(scores, labels) == pytest.approx(u / (labels.sum() * (labels == 0).sum()), abs=1e-12)


def test_auc_of_known_orderings() -> None:
    labels = [0, 0, 1, 1]
    assert auc([1, 2, 3, 4], labels) == 1.0
    assert auc([4, 3, 2, 1], labels) == 0.0
    assert auc([5, 5, 5, 5], labels) == 0.5
    assert auc([1, 3, 2, 4], labels) == 0.75
    assert math.isnan(auc([1, 2], [1, 1]))


def test_bootstrap_interval_agrees_with_delong_on_a_large_sample() -> None:
    rng = np.random.default_rng(11)
    pos, neg = rng.normal(1.0, 1.0, 200), rng.normal(0.0, 1.0, 200)
    scores, labels = np.concatenate([pos, neg]), np.r_[np.ones(200), np.zeros(200)]
    low, high = auc_interval(scores, labels, np.arange(400), seed=0)
    d_low, d_high = _delong_interval(pos, neg)
    assert low == pytest.approx(d_low, abs=0.015)
    assert high == pytest.approx(d_high, abs=0.015)


def test_bootstrap_interval_covers_the_true_auc_about_95_percent_of_the_time() -> None:
    # Binormal scores with unit variances and means 0 and d: AUC = Phi(d / sqrt(2)).
    d = 1.2
    truth = norm.cdf(d / math.sqrt(2))
    rng = np.random.default_rng(5)
    covered = 0
    trials = 200
    for t in range(trials):
        pos, neg = rng.normal(d, 1.0, 40), rng.normal(0.0, 1.0, 40)
        low, high = auc_interval(np.r_[pos, neg], np.r_[np.ones(40), np.zeros(40)], np.arange(80), seed=t)
        covered += low <= truth <= high
    assert 0.90 <= covered / trials <= 0.99


def test_interval_resamples_patients_not_scans() -> None:
    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(30), np.zeros(30)]
    scores = rng.normal(size=60) + labels
    once = auc_interval(scores, labels, np.arange(60), seed=3)
    # Four scans of every patient with the same score: the patient-level interval is unchanged...
    four = auc_interval(np.tile(scores, 4), np.tile(labels, 4), np.tile(np.arange(60), 4), seed=3)
    assert four == pytest.approx(once, abs=1e-12)
    # ...where counting each scan as its own patient would halve its width (sqrt of 4).
    naive = auc_interval(np.tile(scores, 4), np.tile(labels, 4), np.arange(240), seed=3)
    assert (naive[1] - naive[0]) / (once[1] - once[0]) == pytest.approx(0.5, abs=0.1)


def test_interval_is_reproducible_from_its_seed() -> None:
    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(20), np.zeros(20)]
    scores = rng.normal(size=40) + labels
    assert auc_interval(scores, labels, np.arange(40), seed=9) == auc_interval(scores, labels, np.arange(40), seed=9)
    assert auc_interval(scores, labels, np.arange(40), seed=9) != auc_interval(scores, labels, np.arange(40), seed=10)


def test_cell_metrics_threshold_the_logit_at_zero() -> None:
    scores = [2.0, -1.0, 0.5, 3.0, -2.0, 0.1, -0.3, 0.0]
    labels = [1, 1, 1, 1, 0, 0, 0, 0]
    m = cell_metrics(scores, labels, range(8), seed=0)
    assert (m.n, m.n_positive, m.n_negative) == (8, 4, 4)
    assert m.sensitivity == 0.75  # -1.0 is missed
    assert m.specificity == 0.75  # 0.1 is a false alarm; a logit of exactly 0 is "no lesion"
    assert m.accuracy == 0.75
    assert m.auc == pytest.approx(13 / 16)  # -1.0 outranks only -2.0
    assert m.auc_ci_low <= m.auc <= m.auc_ci_high


def test_a_cell_without_healthy_scans_has_no_specificity_or_auc() -> None:
    m = cell_metrics([1.0, -1.0], [1, 1], [0, 1], seed=0)
    assert m.sensitivity == 0.5
    assert math.isnan(m.specificity)
    assert math.isnan(m.auc)
    assert math.isnan(m.auc_ci_low)


@pytest.mark.parametrize(
    ("scores", "labels", "patients", "message"),
    [
        ([1.0, 2.0], [0, 1, 1], [0, 1], r"scores \(2,\) and labels \(3,\) must be two arrays of one length"),
        ([1.0, float("nan")], [0, 1], [0, 1], r"scores hold NaN or infinite values"),
        ([1.0, 2.0], [0, 2], [0, 1], r"labels must be 0 \(no lesion\) or 1 \(lesion\)"),
        ([1.0, 2.0], [0, 1], [0, 0], r"a patient has scans with and without a lesion"),
        ([1.0, 2.0], [0, 1], [0], r"patients \(1,\) must give one patient per score \(2,\)"),
    ],
)
def test_bad_inputs_are_refused(scores: list[float], labels: list[int], patients: list[int], message: str) -> None:
    with pytest.raises(TaskDataError, match=message):
        auc_interval(scores, labels, patients, seed=0)


def test_too_few_resamples_are_refused() -> None:
    with pytest.raises(TaskDataError, match=r"resamples is 10, expected at least 100"):
        auc_interval([1.0, 2.0], [0, 1], [0, 1], seed=0, resamples=10)


def _scan(patient: int, label: int, score: float, sex: str, scanner: str = "compact-head") -> ScanScore:
    return ScanScore(
        patient=patient,
        scanner=scanner,
        level="dose 100 %",
        label=label,
        score=score,
        radius_mm=7.0 if label else math.nan,
        contrast_hu=50.0 if label else math.nan,
        sex=sex,
        age_years=50.0,
        head_scale=0.95,
    )


def test_a_gap_between_subgroups_shows_in_their_cells() -> None:
    # Women's scans are scored perfectly, men's at random: the sex cells must show it.
    rng = np.random.default_rng(0)
    scans = []
    for i in range(80):
        label, sex = i % 2, ("female", "male")[(i // 2) % 2]
        score = (2.0 if label else -2.0) if sex == "female" else float(rng.normal())
        scans.append(_scan(i, label, score, sex))
    cells = build_cells(scans, ["compact-head"], ["dose 100 %"], "dose", seed=0)
    by = {(c.dimension, c.level): c for c in cells}
    assert by["sex", "female"].auc == 1.0
    assert by["sex", "female"].accuracy == 1.0
    assert by["sex", "male"].auc_ci_high < 0.9
    assert by["sex", "male"].n == 40
    assert by["all", "all scans"].n == 80
    # Lesion bins: the bin's lesion scans against every healthy scan.
    assert by["lesion radius", "6-9 mm"].n_positive == 40
    assert by["lesion radius", "6-9 mm"].n_negative == 40
    assert ("lesion radius", "3-6 mm") not in by  # no lesion of that size: no cell
