"""Evaluate a trained model on held-out virtual patients under every virtual scanner condition.

Every patient of the held-out cohort (:mod:`tasks.robustness.cohort`) is acquired under every
condition (:mod:`tasks.robustness.acquisition`: each scanner at each dose or noise level), the
record goes through the task's own loader, and the model (built by the task, weights set with
:func:`tasks.set_weights`) scores it. The same patients appear in every condition, so
differences between scanners are not differences between patient samples.

Cells (see :func:`build_cells`): all scans; each scanner x level; each scanner and each level
pooled; lesion radius, lesion contrast and radius x contrast bins (the lesion scans in the bin
against every healthy scan); sex, age and head-size subgroups. Every pooled cell's AUC
interval resamples patients, not scans.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from raw_data.phantoms import SEXES
from tasks.errors import TaskDataError
from tasks.registry import get_task
from tasks.robustness.acquisition import Condition, conditions_for, write_records
from tasks.robustness.cohort import CONTRAST_BINS, RADIUS_BINS, HeldOutPatient, held_out_patients, patient_seed
from tasks.robustness.metrics import BOOTSTRAP_RESAMPLES, cell_metrics
from tasks.robustness.report import RobustnessCell, RobustnessReport, ScanScore
from tasks.train import set_weights, weights_hash

__all__ = ["AGE_BINS", "HEAD_BINS", "build_cells", "clear_acquisitions", "evaluate_robustness"]

AGE_BINS = ((20.0, 45.0), (45.0, 65.0), (65.0, 90.0))
"""Age bins, years."""
HEAD_BINS = ((0.88, 0.94), (0.94, 0.99), (0.99, 1.04))
"""Head size bins (scale factor)."""
DEFAULT_PATIENTS = 24
_BATCH = 32
_NOISE_PURPOSE = 2

Selector = Callable[[ScanScore], bool]


def _in(value: float, bounds: tuple[float, float], last: bool) -> bool:
    lo, hi = bounds
    return lo <= value < hi or (last and value == hi)


def _bins(
    name: str, unit: str, bins: Sequence[tuple[float, float]], value: Callable[[ScanScore], float]
) -> list[tuple[str, str, Selector]]:
    out: list[tuple[str, str, Selector]] = []
    for i, b in enumerate(bins):
        last = i == len(bins) - 1

        def pick(s: ScanScore, b: tuple[float, float] = b, last: bool = last) -> bool:
            return _in(value(s), b, last)

        out.append((name, f"{b[0]:g}-{b[1]:g}{unit}", pick))
    return out


def _equals(attribute: str, value: str) -> Selector:
    return lambda s: bool(getattr(s, attribute) == value)


def _both(first: Selector, second: Selector) -> Selector:
    return lambda s: first(s) and second(s)


def _or_healthy(select: Selector) -> Selector:
    return lambda s: s.label == 0 or select(s)


def _everything(s: ScanScore) -> bool:
    return True


def _lesion_bins() -> list[tuple[str, str, Selector]]:
    """Lesion cells keep every healthy scan: a bin's sensitivity against the common specificity."""
    radius = _bins("lesion radius", " mm", RADIUS_BINS, lambda s: s.radius_mm)
    contrast = _bins("lesion contrast", " HU", CONTRAST_BINS, lambda s: s.contrast_hu)
    both = [
        ("lesion radius x contrast", f"{r_level}, {c_level}", _both(r, c))
        for _, r_level, r in radius
        for _, c_level, c in contrast
    ]
    return [(dimension, level, _or_healthy(select)) for dimension, level, select in (*radius, *contrast, *both)]


def build_cells(
    scans: Sequence[ScanScore], scanners: Sequence[str], levels: Sequence[str], level_dimension: str, *, seed: int
) -> list[RobustnessCell]:
    """Compute every cell of the report from the per-scan scores.

    Parameters:
        scans: every scan's score and attributes.
        scanners: the scanners, in report order.
        levels: the acquisition levels, in report order.
        level_dimension: ``"dose"`` or ``"noise"``.
        seed: seed of the bootstrap (each cell draws from its own stream).

    Returns:
        The cells, in table order; empty bins, and lesion bins without a lesion scan, are
        left out.
    """
    selectors: list[tuple[str, str, Selector]] = [("all", "all scans", _everything)]
    selectors += [
        (f"scanner x {level_dimension}", f"{sc}, {lv}", _both(_equals("scanner", sc), _equals("level", lv)))
        for sc in scanners
        for lv in levels
    ]
    selectors += [("scanner", sc, _equals("scanner", sc)) for sc in scanners]
    selectors += [(level_dimension, lv, _equals("level", lv)) for lv in levels]
    selectors += _lesion_bins()
    selectors += [("sex", sex, _equals("sex", sex)) for sex in SEXES]
    selectors += _bins("age", " years", AGE_BINS, lambda s: s.age_years)
    selectors += _bins("head size", " scale", HEAD_BINS, lambda s: s.head_scale)
    cells = []
    for i, (dimension, level, select) in enumerate(selectors):
        chosen = [s for s in scans if select(s)]
        if not chosen or (dimension.startswith("lesion") and not any(s.label for s in chosen)):
            continue
        metrics = cell_metrics(
            [s.score for s in chosen],
            [s.label for s in chosen],
            [s.patient for s in chosen],
            seed=int(np.random.SeedSequence([seed & 0xFFFFFFFF, i]).generate_state(1)[0]),
        )
        cells.append(RobustnessCell(dimension, level, **vars(metrics)))
    return cells


def _scratch() -> str | None:
    """Return a RAM-backed folder for the short-lived records when the system has one."""
    # Each record lives for one read; on tmpfs its write skips the disk's sync.
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _scores(model: torch.nn.Module, inputs: torch.Tensor) -> list[float]:
    model.eval()
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, inputs.shape[0], _BATCH):
            out += model(inputs[start : start + _BATCH]).double().tolist()
    return out


def _attributes(held: HeldOutPatient) -> dict[str, float | str]:
    patient = held.patient
    demographics = patient.demographics
    if demographics is None:
        raise TaskDataError(f"held-out patient {held.index} has no demographics")
    lesion = patient.lesions[0] if patient.lesions else None
    return {
        "radius_mm": lesion.radius_mm if lesion else math.nan,
        "contrast_hu": lesion.contrast_hu if lesion else math.nan,
        "sex": demographics.sex,
        "age_years": demographics.age_years,
        "head_scale": demographics.head_scale,
    }


@functools.lru_cache(maxsize=4)
def _acquired(
    task_name: str, seed: int, patients: int, conditions: tuple[Condition, ...]
) -> tuple[tuple[HeldOutPatient, ...], tuple[torch.Tensor, ...]]:
    """Acquire every held-out patient under every condition; return the patients and the model inputs,
    one stack per condition (tuples: every caller shares what is kept).

    The inputs depend on the task, the seed, the patient count and the conditions, never on the
    model's weights: a coordinator evaluating one study after another (same evaluation seed) acquires
    the patients once per process. Synthesising and reconstructing them is most of an evaluation's
    time. Callers must not change the returned tensors in place; :func:`clear_acquisitions` empties
    the cache.
    """
    task = get_task(task_name)
    cohort = held_out_patients(patients, seed)
    inputs: dict[int, list[torch.Tensor]] = {k: [] for k in range(len(conditions))}
    with tempfile.TemporaryDirectory(prefix="metai-robustness-", dir=_scratch()) as tmp:
        folder = Path(tmp)
        for scanner in dict.fromkeys(c.scanner for c in conditions):
            ks = [k for k, c in enumerate(conditions) if c.scanner == scanner]
            for held in cohort:
                seeds = [patient_seed(seed, held.index, _NOISE_PURPOSE + k) for k in ks]
                records = write_records(task_name, held, [conditions[k] for k in ks], seeds, folder)
                for k, (path, fmt) in zip(ks, records, strict=True):
                    try:
                        inputs[k].append(task.load_record(path, fmt))
                    finally:
                        path.unlink()
    return tuple(cohort), tuple(torch.stack(inputs[k]) for k in range(len(conditions)))


def clear_acquisitions() -> None:
    """Forget the acquisitions :func:`evaluate_robustness` keeps (the next evaluation acquires afresh)."""
    _acquired.cache_clear()


_METHOD = (
    "{patients} held-out virtual patients (half with one hyperdense lesion, radius 3-12 mm, contrast 20-100 HU, "
    "cycling through the radius x contrast bins; "
    "sex, age and head size drawn per patient and shaping the anatomy), none of them any hospital's, each "
    "acquired under every condition ({conditions}) with its own noise, written as the record a node stores and "
    "read by the task's loader{rebin}. A scan is called 'lesion' when the model's logit is > 0. AUC: Mann-Whitney "
    "(ties count one half). 95 % interval: percentile, {resamples} stratified bootstrap resamples of patients "
    "(all scans of a drawn patient together), seeded. Lesion bins compare the bin's lesion scans with every "
    "healthy scan; pooled cells pool the conditions."
)


def evaluate_robustness(
    task_name: str,
    weights: list[np.ndarray],
    *,
    seed: int,
    patients_per_cell: int = DEFAULT_PATIENTS,
    doses: tuple[float, ...] = (1.0, 0.25),
) -> RobustnessReport:
    """Evaluate a task's model on held-out virtual patients across scanners, levels and groups.

    Parameters:
        task_name: a task code of :data:`tasks.TASKS`.
        weights: the model's weights (as :func:`tasks.get_weights` returns them).
        seed: seed of the patients, the acquisition noise and the bootstrap.
        patients_per_cell: patients in each scanner x level cell (every patient is acquired
            under every condition), >= 4.
        doses: dose factors of the CT scanners (MR uses noise levels 1x and 2x).

    Returns:
        The report.

    Raises:
        UnknownTaskError: no such task.
        WeightsError: the weights do not fit the task's model.
        TaskDataError: fewer than 4 patients, bad doses, or a record the task's loader refuses.
    """
    task = get_task(task_name)
    if patients_per_cell < 4:
        raise TaskDataError(f"patients_per_cell is {patients_per_cell}, expected at least 4 (2 with a lesion)")
    model = task.build_model()
    set_weights(model, weights)
    conditions = conditions_for(task_name, doses)
    cohort, inputs = _acquired(task_name, seed, patients_per_cell, tuple(conditions))
    scans: list[ScanScore] = []
    for k, condition in enumerate(conditions):
        for held, score in zip(cohort, _scores(model, inputs[k]), strict=True):
            scans.append(
                ScanScore(
                    patient=held.index,
                    scanner=condition.scanner,
                    level=condition.level,
                    label=held.label,
                    score=score,
                    **_attributes(held),  # type: ignore[arg-type]
                )
            )
    scanners = tuple(dict.fromkeys(c.scanner for c in conditions))
    levels = tuple(dict.fromkeys(c.level for c in conditions))
    dimension = conditions[0].level_dimension
    rebin = (
        "; the sinogram model reads only compact-head geometry, so the other scanners' sinograms are rebinned "
        "to it ray by ray first"
        if task_name == "ct-sinogram-lesion-v1"
        else ""
    )
    method = _METHOD.format(
        patients=patients_per_cell,
        conditions=", ".join(f"{c.scanner} {c.level}" for c in conditions),
        rebin=rebin,
        resamples=BOOTSTRAP_RESAMPLES,
    )
    return RobustnessReport(
        task=task_name,
        weights_hash="0x" + weights_hash(weights).hex(),
        seed=seed,
        patients=patients_per_cell,
        scanners=scanners,
        levels=levels,
        level_dimension=dimension,
        method=method,
        cells=tuple(build_cells(scans, scanners, levels, dimension, seed=seed)),
        scans=tuple(scans),
    )
