"""Public compute entry points refuse NaN and inf like the file readers do, naming where.

Before, ``fbp`` of a sinogram with one NaN returned an all-NaN image, and the projector,
the noise model and the MRI reconstruction spread NaN just as silently.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raw_data import (
    FanBeamGeometry,
    KSpace,
    NonFiniteDataError,
    ParallelBeamGeometry,
    back_project,
    coil_images,
    coil_sensitivities,
    combine_coils,
    fbp,
    forward_project,
    reconstruct_kspace,
    root_sum_of_squares,
    simulate_kspace,
    simulate_measurement,
)


def test_fbp_refuses_a_nan_and_says_where(parallel_geometry: ParallelBeamGeometry) -> None:
    sinogram = torch.rand(parallel_geometry.sinogram_shape)
    sinogram[3, 5] = float("nan")
    with pytest.raises(
        NonFiniteDataError, match=r"sinogram holds 1 NaN or infinite values \(first at index \(3, 5\)\)"
    ):
        fbp(sinogram, parallel_geometry)


def test_fbp_refuses_inf_in_a_batch(fan_geometry: FanBeamGeometry) -> None:
    sinogram = torch.rand(2, *fan_geometry.sinogram_shape, dtype=torch.float64)
    sinogram[1, 7, 9] = float("inf")
    sinogram[1, 8, 0] = float("-inf")
    with pytest.raises(
        NonFiniteDataError, match=r"sinogram holds 2 NaN or infinite values \(first at index \(1, 7, 9\)\)"
    ):
        fbp(sinogram, fan_geometry, "hann")


def test_fbp_of_finite_data_is_finite(parallel_geometry: ParallelBeamGeometry) -> None:
    image = fbp(torch.rand(parallel_geometry.sinogram_shape), parallel_geometry)
    assert torch.isfinite(image).all()


def test_forward_projection_refuses_nan(parallel_geometry: ParallelBeamGeometry) -> None:
    image = torch.zeros(parallel_geometry.image.shape)
    image[10, 20] = float("nan")
    with pytest.raises(NonFiniteDataError, match=r"image holds 1 NaN or infinite values \(first at index \(10, 20\)\)"):
        forward_project(image, parallel_geometry)


def test_back_projection_refuses_inf(parallel_geometry: ParallelBeamGeometry) -> None:
    sinogram = torch.zeros(parallel_geometry.sinogram_shape)
    sinogram[0, 1] = float("inf")
    with pytest.raises(NonFiniteDataError, match=r"sinogram holds 1 NaN .*\(first at index \(0, 1\)\)"):
        back_project(sinogram, parallel_geometry)


def test_noise_model_refuses_nan_line_integrals() -> None:
    clean = torch.zeros(4, 8)
    clean[2, 3] = float("nan")
    with pytest.raises(NonFiniteDataError, match=r"line integrals hold 1 NaN .*\(first at index \(2, 3\)\)"):
        simulate_measurement(clean, 1e5, 5.0)


@pytest.fixture
def kspace() -> KSpace:
    image = np.zeros((16, 16))
    image[4:12, 4:12] = 1.0
    return simulate_kspace(image, coil_sensitivities((16, 16), 2))


def test_kspace_recon_refuses_data_corrupted_after_construction(kspace: KSpace) -> None:
    kspace.data[1, 2, 3] = np.nan  # the arrays of a frozen KSpace stay writable
    with pytest.raises(
        NonFiniteDataError, match=r"k-space holds 1 NaN or infinite values \(first at index \(1, 2, 3\)\)"
    ):
        reconstruct_kspace(kspace)


def test_coil_images_refuse_inf_k_space(kspace: KSpace) -> None:
    kspace.data[0, 5, 6] = np.inf
    with pytest.raises(NonFiniteDataError, match=r"k-space holds 1 NaN .*\(first at index \(0, 5, 6\)\)"):
        coil_images(kspace)


def test_coil_map_combination_refuses_nan(kspace: KSpace) -> None:
    images = coil_images(kspace)
    images[1, 4, 5] = np.nan
    with pytest.raises(NonFiniteDataError, match=r"coil images hold 1 NaN .*\(first at index \(1, 4, 5\)\)"):
        combine_coils(images, kspace.coil_maps)


def test_root_sum_of_squares_refuses_nan(kspace: KSpace) -> None:
    images = coil_images(kspace)
    images[0, 0, 1] = np.nan
    with pytest.raises(NonFiniteDataError, match=r"coil images hold 1 NaN .*\(first at index \(0, 0, 1\)\)"):
        root_sum_of_squares(images)
