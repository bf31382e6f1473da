"""MRI k-space simulation and reconstruction: coil maps, masks, noise, oversampling."""

from __future__ import annotations

import numpy as np
import pytest

from raw_data import (
    DataShapeError,
    ImageGrid,
    KSpace,
    PhantomError,
    cartesian_mask,
    coil_sensitivities,
    fft2c,
    ifft2c,
    rasterize_ellipses,
    reconstruct_kspace,
    shepp_logan,
    simulate_kspace,
)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays, flattened."""
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return rasterize_ellipses(shepp_logan(256.0), ImageGrid((96, 96), 256.0 / 96))


@pytest.fixture(scope="module")
def maps() -> np.ndarray:
    return coil_sensitivities((96, 96), 8)


@pytest.mark.parametrize("method", ["rss", "coil-maps"])
@pytest.mark.parametrize("oversampling", [1, 2])
def test_fully_sampled_reconstruction_matches_the_phantom(
    phantom: np.ndarray, maps: np.ndarray, method: str, oversampling: int
) -> None:
    kspace = simulate_kspace(phantom, maps, noise_std=0.005, seed=0, readout_oversampling=oversampling)
    assert kspace.data.shape == (8, 96, 96 * oversampling)
    image = reconstruct_kspace(kspace, method=method)
    assert image.shape == (96, 96)
    assert correlation(image, phantom) >= 0.99


def test_unitary_fft_round_trips(phantom: np.ndarray) -> None:
    np.testing.assert_allclose(ifft2c(fft2c(phantom)).real, phantom, atol=1e-12)


def test_coil_maps_are_smooth_and_normalised(maps: np.ndarray) -> None:
    np.testing.assert_allclose((np.abs(maps) ** 2).sum(axis=0), 1.0, rtol=1e-5)
    strongest = np.abs(maps).reshape(8, -1).argmax(axis=1)
    assert len(set(strongest.tolist())) == 8  # every coil peaks somewhere else


def test_equispaced_mask_keeps_one_line_in_r_plus_the_calibration_block() -> None:
    imaging, calibration = cartesian_mask(96, 4, 16)
    assert imaging.sum() == 24
    assert imaging[48]  # the k-space centre line is always acquired
    assert np.array_equal(np.nonzero(calibration)[0], np.arange(40, 56))
    assert (imaging | calibration).sum() == 24 + 16 - 4


def test_random_mask_is_seeded() -> None:
    a = cartesian_mask(96, 3, 8, pattern="random", seed=1)[0]
    b = cartesian_mask(96, 3, 8, pattern="random", seed=1)[0]
    c = cartesian_mask(96, 3, 8, pattern="random", seed=2)[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.sum() == 32


def test_undersampling_zeroes_the_missing_lines_and_costs_quality(phantom: np.ndarray, maps: np.ndarray) -> None:
    full = simulate_kspace(phantom, maps)
    under = simulate_kspace(phantom, maps, acceleration=4, calibration_lines=12)
    assert not np.any(under.data[:, ~under.sampled, :])
    np.testing.assert_array_equal(under.data[:, under.sampled], full.data[:, under.sampled])
    assert correlation(reconstruct_kspace(under), phantom) < correlation(reconstruct_kspace(full), phantom)


def test_noise_has_the_requested_standard_deviation(phantom: np.ndarray, maps: np.ndarray) -> None:
    clean = simulate_kspace(phantom, maps)
    noisy = simulate_kspace(phantom, maps, noise_std=0.1, seed=5)
    assert np.std(noisy.data - clean.data) == pytest.approx(0.1, rel=0.02)


def test_coil_map_method_needs_maps(phantom: np.ndarray, maps: np.ndarray) -> None:
    k = simulate_kspace(phantom, maps)
    bare = KSpace(k.data, k.imaging, k.calibration, k.recon_shape)
    with pytest.raises(DataShapeError, match="needs coil sensitivity maps"):
        reconstruct_kspace(bare, method="coil-maps")


def test_kspace_refuses_a_wrong_rank() -> None:
    with pytest.raises(DataShapeError, match="k-space has 2 dimensions, expected 3"):
        KSpace(np.zeros((4, 4), np.complex64), np.ones(4, bool), np.zeros(4, bool), (4, 4))


def test_mask_refuses_more_calibration_lines_than_lines() -> None:
    with pytest.raises(PhantomError, match=r"calibration_lines is 20, expected 0\.\.16"):
        cartesian_mask(16, 2, 20)
