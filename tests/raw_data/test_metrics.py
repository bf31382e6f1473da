"""Image-quality metrics: PSNR, SSIM and lesion CNR on images with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raw_data import DataShapeError, background_ring, lesion_cnr, psnr, ssim


@pytest.fixture
def reference() -> np.ndarray:
    y, x = np.mgrid[:64, :64]
    return np.sin(x / 5.0) + np.cos(y / 7.0)


def test_psnr_of_a_known_error(reference: np.ndarray) -> None:
    noisy = reference + 0.1  # MSE 0.01
    span = reference.max() - reference.min()
    assert psnr(noisy, reference) == pytest.approx(10 * math.log10(span**2 / 0.01))
    assert psnr(reference, reference) == math.inf


def test_ssim_is_one_for_identical_images_and_drops_with_noise(reference: np.ndarray) -> None:
    noisy = reference + np.random.default_rng(0).normal(0, 0.5, reference.shape)
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert ssim(noisy, reference) < 0.8


def test_lesion_cnr_of_a_known_contrast() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(0.0, 2.0, (128, 128))
    y, x = np.mgrid[:128, :128]
    lesion = (y - 64) ** 2 + (x - 64) ** 2 <= 10**2
    image[lesion] += 10.0
    assert lesion_cnr(image, lesion) == pytest.approx(5.0, rel=0.15)


def test_background_ring_surrounds_the_lesion_without_touching_it() -> None:
    lesion = np.zeros((32, 32), bool)
    lesion[14:18, 14:18] = True
    ring = background_ring(lesion, 2, 5)
    assert not (ring & lesion).any()
    assert ring[16, 16 + 5]
    assert not ring[16, 16 + 1]


def test_metrics_refuse_images_of_different_shapes(reference: np.ndarray) -> None:
    with pytest.raises(DataShapeError, match=r"image \(64, 32\) and reference \(64, 64\)"):
        psnr(reference[:, :32], reference)


def test_cnr_refuses_an_empty_lesion(reference: np.ndarray) -> None:
    with pytest.raises(DataShapeError, match="lesion or background mask is empty"):
        lesion_cnr(reference, np.zeros_like(reference, dtype=bool))
