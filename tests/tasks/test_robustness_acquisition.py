"""Held-out cohort and virtual acquisitions of the robustness evaluation."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from raw_data import PROFILES, get_profile, make_patient
from raw_data.phantoms import Demographics
from tasks import TaskDataError, get_task
from tasks.ct import SOURCE_PROFILE
from tasks.robustness import HeldOutPatient, conditions_for, held_out_patients, rebin_fan_beam
from tasks.robustness.acquisition import write_records
from tasks.robustness.cohort import CONTRAST_BINS, RADIUS_BINS
from tasks.synthetic import balanced_patients
from tests.tasks.conftest import IMAGE, KSPACE, SINOGRAM

_SEED = re.compile(r"seed=(\d+)")


def _patient_seeds(descriptions: list[str]) -> set[int]:
    return {int(_SEED.search(d).group(1)) for d in descriptions}  # type: ignore[union-attr]


def test_held_out_patients_are_no_hospitals_patients() -> None:
    held = set()
    for seed in range(5):
        held |= _patient_seeds([h.patient.description for h in held_out_patients(60, seed)])
    hospitals = set()
    for seed in range(60):  # the seeds demos, tests and benchmarks give balanced_patients
        patients, _ = balanced_patients(60, seed, (6.0, 12.0), (40.0, 100.0))
        hospitals |= _patient_seeds([p.description for p in patients])
    assert len(held) == 300
    assert held.isdisjoint(hospitals)


def test_cohort_alternates_labels_and_covers_every_lesion_bin() -> None:
    cohort = held_out_patients(36, 0)
    assert [h.label for h in cohort] == [i % 2 for i in range(36)]
    seen: dict[tuple[int, int], int] = {}
    for h in cohort:
        assert h.patient.demographics is not None
        for lesion in h.patient.lesions:
            r = next(i for i, (lo, hi) in enumerate(RADIUS_BINS) if lo <= lesion.radius_mm <= hi)
            c = next(i for i, (lo, hi) in enumerate(CONTRAST_BINS) if lo <= lesion.contrast_hu <= hi)
            seen[r, c] = seen.get((r, c), 0) + 1
    assert seen == {(r, c): 2 for r in range(3) for c in range(3)}


def test_cohort_is_fixed_by_its_seed() -> None:
    a, b, c = held_out_patients(6, 3), held_out_patients(6, 3), held_out_patients(6, 4)
    assert [h.patient.description for h in a] == [h.patient.description for h in b]
    assert [h.patient.description for h in a] != [h.patient.description for h in c]


def test_cohort_needs_both_labels() -> None:
    with pytest.raises(TaskDataError, match=r"n is 1, expected at least 2 patients"):
        held_out_patients(1, 0)


@pytest.mark.parametrize("code", [SINOGRAM, IMAGE])
def test_ct_tasks_meet_every_scanner_profile_at_two_doses(code: str) -> None:
    conditions = conditions_for(code)
    assert [(c.scanner, c.level) for c in conditions] == [
        (name, level) for name in PROFILES for level in ("dose 100 %", "dose 25 %")
    ]


def test_mr_task_meets_three_coil_arrays_at_two_noise_levels() -> None:
    assert [(c.scanner, c.level) for c in conditions_for(KSPACE)] == [
        (f"mr-{n}-coil", level) for n in (2, 4, 8) for level in ("noise x1", "noise x2")
    ]


@pytest.mark.parametrize("doses", [(1.0, 0.0), (), (0.5, 0.5), (1.0, float("nan"))])
def test_doses_must_be_distinct_and_positive(doses: tuple[float, ...]) -> None:
    with pytest.raises(TaskDataError, match=r"expected one or more distinct positive dose factors"):
        conditions_for(SINOGRAM, doses)


@pytest.mark.parametrize("name", [n for n in PROFILES if n != SOURCE_PROFILE.name])
def test_rebinning_reproduces_the_compact_head_sinogram(name: str) -> None:
    patient = held_out_patients(2, 0)[1].patient
    grid = patient.grid(128)
    source = get_profile(name).geometry(grid)
    target = SOURCE_PROFILE.geometry(grid)
    rebinned = rebin_fan_beam(patient.line_integrals(source), source, target).data
    exact = patient.line_integrals(target)
    error = np.abs(rebinned - exact)
    # Bilinear interpolation of a sampled sinogram: errors concentrate where rays graze the
    # skull (the chord grows like a square root there); elsewhere they are tiny.
    assert error.mean() < 5e-4 * exact.max()
    assert np.percentile(error, 99) < 0.01 * exact.max()
    assert error.max() < 0.1 * exact.max()


def test_rebinning_refuses_rays_the_source_never_measured() -> None:
    grid = held_out_patients(2, 0)[0].patient.grid(64)
    small, large = SOURCE_PROFILE.geometry(grid), get_profile("lightspeed-like").geometry(grid)
    with pytest.raises(TaskDataError, match=r"target field of view 499 mm exceeds the source scanner's 323 mm"):
        rebin_fan_beam(np.zeros(small.sinogram_shape), small, large)


def test_every_scanner_record_reaches_the_sinogram_model_through_its_loader(tmp_path: Path) -> None:
    task = get_task(SINOGRAM)
    held = held_out_patients(2, 0)[1]
    for scanner in PROFILES:
        conditions = [c for c in conditions_for(SINOGRAM) if c.scanner == scanner]
        records = write_records(SINOGRAM, held, conditions, [1, 2], tmp_path)
        for path, fmt in records:
            assert task.load_record(path, fmt).shape == task.input_shape


def test_mr_reference_condition_is_the_tasks_own_synthetic_acquisition(tmp_path: Path) -> None:
    # 4 coils at noise x1 must be what the task trains on, or "x2" would mean nothing.
    task = get_task(KSPACE)
    held = held_out_patients(2, 0)[1]
    reference = next(c for c in conditions_for(KSPACE) if c.scanner == "mr-4-coil" and c.factor == 1.0)
    ((path, fmt),) = write_records(KSPACE, held, [reference], [123], tmp_path)
    expected = task._synthetic_inputs([held.patient], [123])[0]
    np.testing.assert_allclose(task.load_record(path, fmt).numpy(), expected.numpy(), atol=1e-5)


def test_records_of_several_scanners_at_once_are_refused(tmp_path: Path) -> None:
    held = held_out_patients(2, 0)[0]
    with pytest.raises(TaskDataError, match=r"span several scanners; pass one scanner's conditions"):
        write_records(SINOGRAM, held, conditions_for(SINOGRAM)[1:3], [1, 2], tmp_path)


def test_each_sex_holds_patients_with_and_without_a_lesion() -> None:
    cohort = held_out_patients(8, 1)
    pairs = sorted((h.patient.demographics.sex, h.label) for h in cohort)  # type: ignore[union-attr]
    assert pairs == sorted([("female", 0), ("female", 1), ("male", 0), ("male", 1)] * 2)


def test_age_reaches_the_data_the_model_reads(tmp_path: Path) -> None:
    # The same patient young and old: the old skull attenuates less, in the record itself.
    task = get_task(SINOGRAM)
    reference = next(c for c in conditions_for(SINOGRAM) if c.scanner == SOURCE_PROFILE.name)

    def total(age: float, noise_seed: int) -> float:
        patient = make_patient(5, lesions=0, demographics=Demographics("male", age, 0.97))
        ((path, fmt),) = write_records(SINOGRAM, HeldOutPatient(0, patient), [reference], [noise_seed], tmp_path)
        return float(task.load_record(path, fmt).sum())

    young, young_again, old = total(25.0, 9), total(25.0, 10), total(85.0, 9)
    assert abs(young - young_again) < 0.001 * young  # what noise alone changes
    assert old < 0.985 * young
