"""Digital patients' demographic-like attributes change their anatomy; the defaults do not."""

from __future__ import annotations

import numpy as np
import pytest

from raw_data import PhantomError, make_patient, to_hu
from raw_data.phantoms import SEXES, Demographics, ct_head, draw_demographics

SIZE = 128  # 2 mm pixels over the 256 mm field


def _hu(seed: int, demographics: Demographics | None) -> np.ndarray:
    return to_hu(make_patient(seed, lesions=0, demographics=demographics).image(SIZE, supersample=1))


def test_defaults_still_give_the_patients_made_before_demographics_existed() -> None:
    # Values printed by make_patient at the commit before demographics were added.
    patient = make_patient(5)
    assert patient.description == "ct_head seed=5 lesions=1 scale=0.981 tilt_rad=0.0537"
    assert patient.lesions[0].center_mm == pytest.approx((-34.81991946171405, -81.61681618888653), abs=1e-9)
    assert patient.lesions[0].radius_mm == pytest.approx(7.091953366252852, abs=1e-12)
    assert patient.demographics is None
    two = make_patient(12, lesions=2)
    assert [round(les.contrast_hu, 6) for les in two.lesions] == [-24.274051, -55.21]


def test_head_scale_sets_the_head_area() -> None:
    small = _hu(3, Demographics("female", 30.0, 0.85))  # below the drawn range, still valid
    large = _hu(3, Demographics("female", 30.0, 1.0))
    area_small, area_large = (small > -500).sum(), (large > -500).sum()
    # Area grows with the square of the scale, up to pixel edges.
    assert area_small / area_large == pytest.approx(0.85**2, rel=0.02)


def test_male_phantoms_have_larger_heads_on_average() -> None:
    rng = np.random.default_rng(0)
    drawn = [draw_demographics(rng) for _ in range(400)]
    scales = {sex: [d.head_scale for d in drawn if d.sex == sex] for sex in SEXES}
    assert 150 < len(scales["female"]) < 250
    assert np.mean(scales["male"]) - np.mean(scales["female"]) == pytest.approx(0.06, abs=0.01)
    assert min(scales["female"]) >= 0.88
    assert max(scales["male"]) <= 1.04


def test_age_lowers_skull_density_in_the_image() -> None:
    young = _hu(3, Demographics("male", 25.0, 0.95))
    old = _hu(3, Demographics("male", 85.0, 0.95))
    skull_young = young[young > 500]
    skull_old = old[(old > 500) & (young > 500)]
    assert np.median(skull_young) == pytest.approx(1000.0, abs=1.0)
    # 55 years past 30, 5 HU a year.
    assert np.median(skull_old) == pytest.approx(1000.0 - 5 * 55, abs=1.0)


def test_age_widens_the_ventricles() -> None:
    young = _hu(3, Demographics("female", 25.0, 0.92))
    old = _hu(3, Demographics("female", 80.0, 0.92))
    csf_young = ((young > 0) & (young < 20)).sum()
    csf_old = ((old > 0) & (old < 20)).sum()
    # Both semi-axes grow by 1 + 0.005 * 50 = 1.25, so the CSF area by about 1.56.
    assert csf_old / csf_young == pytest.approx(1.25**2, rel=0.06)


def test_the_description_names_the_attributes() -> None:
    patient = make_patient(9, demographics=Demographics("female", 61.5, 0.9))
    assert patient.description.endswith("scale=0.900 tilt_rad=-0.0372 sex=female age_years=61.5")
    assert patient.demographics == Demographics("female", 61.5, 0.9)


def test_lesions_of_the_tasks_sizes_fit_in_the_smallest_oldest_heads() -> None:
    tight = Demographics("female", 90.0, 0.88)
    for seed in range(100):
        patient = make_patient(seed, lesions=1, radius_mm=(6.0, 11.0), demographics=tight)
        assert patient.label == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("other", 40.0, 0.9), r"sex is 'other', expected one of female, male"),
        (("male", 12.0, 0.9), r"age_years is 12.0, expected 20 to 90"),
        (("male", 40.0, 1.2), r"head_scale is 1.2, expected 0.8 to 1.05"),
    ],
)
def test_impossible_demographics_are_refused(args: tuple[str, float, float], message: str) -> None:
    with pytest.raises(PhantomError, match=message):
        Demographics(*args)


def test_ct_head_refuses_a_skull_no_denser_than_brain() -> None:
    with pytest.raises(PhantomError, match=r"skull_hu is 30.0, expected a number above the brain's 40 HU"):
        ct_head(skull_hu=30.0)
    with pytest.raises(PhantomError, match=r"ventricle_scale is 2.5, expected 0.5 to 2"):
        ct_head(ventricle_scale=2.5)


def test_a_given_sex_is_kept_and_the_draws_stay_in_step() -> None:
    drawn = draw_demographics(np.random.default_rng(4))
    fixed = draw_demographics(np.random.default_rng(4), "female")
    assert fixed.sex == "female"
    assert fixed.age_years == drawn.age_years
    with pytest.raises(PhantomError, match=r"sex is 'x', expected one of female, male"):
        draw_demographics(np.random.default_rng(4), "x")
