"""Digital patients: Shepp-Logan family, CT values, lesions, labels and exact projections."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raw_data import (
    MU_WATER_PER_MM,
    Ellipse,
    ImageGrid,
    PhantomError,
    ct_head,
    ellipse_line_integrals,
    hu_to_attenuation,
    make_patient,
    parallel_beam,
    rasterize_ellipses,
    shepp_logan,
    to_hu,
)


def test_hu_conversion_maps_air_to_zero_and_water_to_mu_water() -> None:
    np.testing.assert_allclose(hu_to_attenuation([-1000, 0, 1000, -1200]), [0, MU_WATER_PER_MM, 2 * MU_WATER_PER_MM, 0])


def test_modified_shepp_logan_has_its_textbook_values() -> None:
    image = rasterize_ellipses(shepp_logan(256.0), ImageGrid((128, 128), 2.0), supersample=1)
    assert image[64, 64] == pytest.approx(0.2)  # brain
    assert image[0, 0] == 0.0  # outside the head
    assert image[64, 78] == pytest.approx(0.0, abs=1e-12)  # ventricle at x = +28 mm: 1 - 0.8 - 0.2


def test_ct_head_regions_have_their_hounsfield_values() -> None:
    image = to_hu(rasterize_ellipses(ct_head(256.0), ImageGrid((128, 128), 2.0), supersample=1))
    assert image[64, 64] == pytest.approx(40.0)  # brain
    assert image[64, 78] == pytest.approx(8.0)  # CSF in the ventricle at x = +28 mm
    assert image[8, 64] == pytest.approx(1000.0)  # skull at the top, y = 112 mm
    assert image[0, 0] == pytest.approx(-1000.0)  # air


def test_exact_line_integral_of_a_disk_is_its_chord() -> None:
    disk = Ellipse(0.5, (10.0, -5.0), (20.0, 20.0))
    geometry = parallel_beam(4, 81, 1.0, (8, 8), 1.0)
    sino = ellipse_line_integrals([disk], geometry)
    t = geometry.detector_positions_mm()
    theta = geometry.angles[:, None]
    shift = t[None, :] - (10 * np.cos(theta) - 5 * np.sin(theta))
    np.testing.assert_allclose(sino, 0.5 * 2 * np.sqrt(np.clip(400 - shift**2, 0, None)))


def test_same_seed_gives_the_same_patient_and_label() -> None:
    a, b, c = make_patient(5), make_patient(5), make_patient(6)
    assert a == b
    assert a != c
    assert a.label == 1
    assert make_patient(5, lesions=0).label == 0


def test_lesion_has_the_requested_size_contrast_and_stays_in_the_brain() -> None:
    patient = make_patient(3, radius_mm=(8.0, 8.0), contrast_hu=(40.0, 40.0))
    (lesion,) = patient.lesions
    assert lesion.radius_mm == 8.0
    assert abs(lesion.contrast_hu) == 40.0
    size = 256
    mask = patient.lesion_mask(size)
    assert mask.sum() * (patient.fov_mm / size) ** 2 == pytest.approx(math.pi * 64, rel=0.05)
    with_lesion = to_hu(patient.image(size, supersample=1))
    healthy = to_hu(make_patient(3, lesions=0).image(size, supersample=1))
    np.testing.assert_allclose((with_lesion - healthy)[mask], lesion.contrast_hu, atol=1e-9)
    assert np.all((healthy[mask] >= 0) & (healthy[mask] <= 100))  # brain or CSF, not skull or air


def test_invalid_lesion_parameters_are_refused() -> None:
    with pytest.raises(PhantomError, match="lesions is -1, expected >= 0"):
        make_patient(0, lesions=-1)
    with pytest.raises(PhantomError, match=r"radius_mm range is \(5, 2\)"):
        make_patient(0, radius_mm=(5, 2))
    with pytest.raises(PhantomError, match="semi-axes"):
        Ellipse(1.0, (0.0, 0.0), (0.0, 1.0))
