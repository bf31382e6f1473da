"""The CT noise model: Poisson counts at a given flux, electronic noise, blur, log transform."""

from __future__ import annotations

import math

import pytest
import torch

from raw_data import GeometryError, detector_blur, make_generator, simulate_measurement
from raw_data.noise import MIN_COUNTS


def _flat(value: float, n: int = 200_000) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.float64)


def test_same_seed_gives_the_same_noise() -> None:
    clean = _flat(2.0, 1000)
    a = simulate_measurement(clean, 1e4, 5.0, generator=make_generator(7))
    b = simulate_measurement(clean, 1e4, 5.0, generator=make_generator(7))
    c = simulate_measurement(clean, 1e4, 5.0, generator=make_generator(8))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_poisson_noise_has_the_variance_photon_statistics_predict() -> None:
    p, flux = 2.0, 1e4
    measured = simulate_measurement(_flat(p), flux, 0.0, generator=make_generator(0))
    # Var(-log(N / I0)) ~ 1 / E[N] for Poisson N with mean I0 exp(-p); 200k samples: +-1%.
    expected = 1.0 / (flux * math.exp(-p))
    assert measured.var().item() == pytest.approx(expected, rel=0.03)
    assert measured.mean().item() == pytest.approx(p, abs=1e-3)


def test_electronic_noise_adds_its_variance_in_counts() -> None:
    p, flux, sigma = 3.0, 2e4, 20.0
    measured = simulate_measurement(_flat(p), flux, sigma, generator=make_generator(1))
    counts = flux * math.exp(-p)
    assert measured.var().item() == pytest.approx((counts + sigma**2) / counts**2, rel=0.05)


def test_higher_dose_means_less_noise() -> None:
    clean = _flat(4.0, 50_000)
    low = simulate_measurement(clean, 1e4, 5.0, generator=make_generator(2))
    high = simulate_measurement(clean, 1e6, 5.0, generator=make_generator(2))
    assert high.std() < low.std() / 5


def test_counts_are_floored_before_the_log() -> None:
    measured = simulate_measurement(_flat(30.0, 100), 1e3, 50.0, generator=make_generator(3))
    assert torch.isfinite(measured).all()
    assert measured.max().item() <= math.log(1e3 / MIN_COUNTS) + 1e-9


def test_detector_blur_keeps_the_total_and_has_the_requested_width() -> None:
    spike = torch.zeros(1, 101, dtype=torch.float64)
    spike[0, 50] = 1.0
    blurred = detector_blur(spike, 4.0)[0]
    assert blurred.sum().item() == pytest.approx(1.0)
    above_half = (blurred >= blurred.max() / 2).sum().item()
    assert above_half in (3, 4, 5)  # FWHM of 4 elements, sampled on integer positions


def test_measurement_refuses_zero_flux() -> None:
    with pytest.raises(GeometryError, match="incident flux is 0"):
        simulate_measurement(_flat(1.0, 4), 0, 0.0)


def test_blur_refuses_negative_width() -> None:
    with pytest.raises(GeometryError, match="FWHM is -1"):
        detector_blur(_flat(1.0, 4), -1.0)
