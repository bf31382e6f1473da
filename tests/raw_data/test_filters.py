"""Reconstruction filters against their definitions: the band-limited ramp kernels of Kak and Slaney,
the apodising windows, the FFT length and linear (not circular) convolution along the detector axis.

The expected responses are direct cosine sums of the spatial kernels written out from the book's
equations (3.61 parallel beam, 3.122 equiangular fan beam), not FFTs of the production kernels; the
expected convolutions come from ``numpy.convolve``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from raw_data import GeometryError
from raw_data.filters import FILTERS, check_filter, fan_response, filter_projections, padded_length, parallel_response


@pytest.fixture(autouse=True)
def fresh_responses() -> None:
    """Compute every response afresh in the test that checks it, never one an earlier test cached."""
    parallel_response.cache_clear()
    fan_response.cache_clear()


def _signed_offsets(length: int) -> np.ndarray:
    """Sample offsets -L/2 .. L/2 - 1 (a kernel of length L in natural, not FFT, order)."""
    return np.arange(-length // 2, length // 2)


def _cosine_sum(kernel: np.ndarray, offsets: np.ndarray, length: int) -> np.ndarray:
    """The DFT of a real even kernel at bins 0 .. L/2, written as a sum of cosines."""
    k = np.arange(length // 2 + 1)
    response: np.ndarray = np.cos(2 * np.pi * np.outer(k, offsets) / length) @ kernel
    return response


def _ramp_expected(length: int) -> np.ndarray:
    """Kak and Slaney eq. 3.61 with tau = 1: h(0) = 1/4, h(even) = 0, h(odd n) = -1 / (pi n)**2."""
    n = _signed_offsets(length)
    h = np.where(n == 0, 0.25, np.where(n % 2 == 1, -1.0 / (np.pi * np.where(n == 0, 1, n)) ** 2, 0.0))
    return _cosine_sum(h, n, length)


# The apodising windows at f cycles per sample (Nyquist 0.5), as scikit-image's iradon defines them
# with omega = 2 pi f: Shepp-Logan sin(omega/2)/(omega/2), cosine cos(omega/2), Hann (1 + cos omega)/2.
WINDOWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ramp": lambda f: np.ones_like(f),
    "shepp-logan": lambda f: np.where(f == 0, 1.0, np.sin(np.pi * f) / (np.pi * np.where(f == 0, 1, f))),
    "cosine": lambda f: np.cos(np.pi * f),
    "hann": lambda f: (1 + np.cos(2 * np.pi * f)) / 2,
}


@pytest.mark.parametrize("length", [64, 128])
@pytest.mark.parametrize("name", FILTERS)
def test_parallel_response_is_the_band_limited_ramp_times_the_window(name: str, length: int) -> None:
    f = np.arange(length // 2 + 1) / length
    expected = _ramp_expected(length) * WINDOWS[name](f)
    np.testing.assert_allclose(parallel_response(name, length), expected, rtol=1e-12, atol=1e-14)


def test_ramp_response_follows_the_absolute_frequency() -> None:
    # Away from DC (where band-limiting leaves a small residue) the ramp is |f|.
    length = 256
    f = np.arange(length // 2 + 1) / length
    response = parallel_response("ramp", length)
    np.testing.assert_allclose(response[8:], f[8:], rtol=0.02)
    assert 0 < response[0] < 1.0 / length


@pytest.mark.parametrize("name", FILTERS)
def test_fan_response_is_the_equiangular_kernel_times_the_window(name: str) -> None:
    # Eq. 3.122: g(0) = 1 / (8 a**2), g(even) = 0, g(odd n) = -1 / (2 pi**2 sin(n a)**2); times a.
    length, a = 128, 0.004
    n = _signed_offsets(length)
    safe = np.where(n == 0, 1, n)
    g = np.where(n == 0, 1 / (8 * a**2), np.where(n % 2 == 1, -1 / (2 * np.pi**2 * np.sin(safe * a) ** 2), 0.0))
    f = np.arange(length // 2 + 1) / length
    expected = _cosine_sum(g, n, length) * WINDOWS[name](f) * a
    np.testing.assert_allclose(fan_response(name, length, a), expected, rtol=1e-10, atol=1e-10 * abs(expected).max())


@pytest.mark.parametrize(("detectors", "length"), [(1, 64), (20, 64), (32, 64), (33, 128), (64, 128), (65, 256),
                                                   (181, 512), (256, 512), (257, 1024)])
def test_fft_length_is_the_smallest_power_of_two_holding_twice_the_detectors_and_at_least_64(
    detectors: int, length: int
) -> None:
    assert padded_length(detectors) == length


@pytest.mark.parametrize("name", FILTERS)
def test_every_listed_filter_is_accepted(name: str) -> None:
    check_filter(name)


def test_an_unknown_filter_is_refused_with_the_choices() -> None:
    message = r"^filter 'hamming' is unknown; choose one of ramp, shepp-logan, cosine, hann$"
    with pytest.raises(GeometryError, match=message):
        check_filter("hamming")


# An even kernel with distinct taps: h(0) = 1, h(+-1) = 0.5, h(+-2) = -0.25, h(+-3) = 0.125.
TAPS = np.array([0.125, -0.25, 0.5, 1.0, 0.5, -0.25, 0.125])


def _taps_response(length: int) -> np.ndarray:
    kernel = np.zeros(length)
    for offset, tap in zip(range(-3, 4), TAPS, strict=True):
        kernel[offset % length] = tap
    return np.real(np.fft.rfft(kernel))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_filtering_is_linear_convolution_along_the_detector_axis(dtype: torch.dtype) -> None:
    # (slices, views, detectors) with three different sizes: filtering along any other axis, or
    # cutting the result to another axis's length, changes the answer or its shape.
    detectors = 20
    x = torch.randn(2, 3, detectors, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = filter_projections(x.to(dtype), _taps_response(padded_length(detectors)))
    assert got.shape == (2, 3, detectors)
    assert got.dtype == dtype
    # 'same' convolution: output sample j is sum_k x[k] h(j - k); the kernel's ends reach past the
    # detector and see zeros there, never samples wrapped round from the other end.
    expected = np.stack([[np.convolve(row, TAPS)[3 : 3 + detectors] for row in slab] for slab in x.numpy()])
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=tol, atol=tol)


def test_filtering_keeps_the_projections_on_their_device() -> None:
    # The meta device computes shapes only; a filter left on the CPU would not combine with it.
    got = filter_projections(torch.zeros(2, 3, 20, device="meta"), _taps_response(64))
    assert (got.device.type, tuple(got.shape)) == ("meta", (2, 3, 20))
