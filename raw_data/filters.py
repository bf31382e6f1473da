"""Reconstruction filters for filtered back-projection: ramp, Shepp-Logan, cosine and Hann.

The ramp is built from its band-limited spatial kernel (Kak and Slaney, "Principles of
Computerized Tomographic Imaging", eq. 3.61 for parallel beam and 3.122 for an equiangular
fan), not by sampling ``|f|`` in frequency: that keeps the zero-frequency term right and
avoids the DC shift of a naive ramp. The apodising windows multiply that response, with
``f`` in cycles per detector element (Nyquist at 0.5).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import numpy.typing as npt
import torch

from raw_data.errors import GeometryError

__all__ = ["FILTERS", "filter_projections"]

FILTERS = ("ramp", "shepp-logan", "cosine", "hann")


def check_filter(name: str) -> None:
    """Raise :class:`GeometryError` unless ``name`` is one of :data:`FILTERS`."""
    if name not in FILTERS:
        raise GeometryError(f"filter {name!r} is unknown; choose one of {', '.join(FILTERS)}")


def padded_length(n_detectors: int) -> int:
    """Return the FFT length: a power of two >= 2 * n_detectors, so convolution is linear."""
    return max(64, 1 << math.ceil(math.log2(2 * n_detectors)))


def _window(name: str, length: int) -> npt.NDArray[np.float64]:
    f = np.fft.rfftfreq(length)  # cycles per sample, 0 .. 0.5
    window: npt.NDArray[np.float64]
    if name == "ramp":
        window = np.ones_like(f)
    elif name == "shepp-logan":
        window = np.sinc(f)
    elif name == "cosine":
        window = np.cos(np.pi * f)
    else:
        window = 0.5 * (1 + np.cos(2 * np.pi * f))  # hann
    return window


def _offsets(length: int) -> npt.NDArray[np.signedinteger]:
    """Signed sample offsets in circular (FFT) order: 0, 1, ..., L/2 - 1, -L/2, ..., -1."""
    n = np.arange(length)
    return np.where(n < length / 2, n, n - length)


@functools.lru_cache(maxsize=32)
def parallel_response(name: str, length: int) -> npt.NDArray[np.float64]:
    """Return the rfft response of the parallel-beam filter, per unit detector pitch.

    Filtering with it and dividing by the pitch (mm) yields the ramp-filtered projection.
    """
    check_filter(name)
    n = _offsets(length)
    kernel = np.zeros(length)
    kernel[n == 0] = 0.25
    odd = (n % 2) != 0
    kernel[odd] = -1.0 / (np.pi * n[odd]) ** 2
    return np.real(np.fft.rfft(kernel)) * _window(name, length)


@functools.lru_cache(maxsize=32)
def fan_response(name: str, length: int, angular_pitch: float) -> npt.NDArray[np.float64]:
    """Return the rfft response of the equiangular fan-beam filter ``g``, times the pitch.

    ``angular_pitch`` is the fan angle between detectors, radians; the factor of one pitch
    turns the discrete convolution into the integral of Kak and Slaney's eq. 3.122.
    """
    check_filter(name)
    n = _offsets(length)
    kernel = np.zeros(length)
    kernel[n == 0] = 1.0 / (8 * angular_pitch**2)
    odd = (n % 2) != 0
    kernel[odd] = -0.5 / (np.pi * np.sin(n[odd] * angular_pitch)) ** 2
    return np.real(np.fft.rfft(kernel)) * _window(name, length) * angular_pitch


def filter_projections(projections: torch.Tensor, response: npt.NDArray[np.float64]) -> torch.Tensor:
    """Convolve every projection with a filter, along the last (detector) axis.

    Parameters:
        projections: shape ``(..., detectors)``.
        response: rfft response of length ``L // 2 + 1`` for an FFT length ``L`` that is at
            least twice the number of detectors (see :func:`padded_length`).

    Returns:
        The filtered projections, same shape, dtype and device.
    """
    n = projections.shape[-1]
    length = 2 * (response.shape[0] - 1)
    # Both transforms run along the last axis (torch's default); the inverse's default length,
    # 2 * (bins - 1), is the padded length again.
    spectrum = torch.fft.rfft(projections, n=length)
    kernel = torch.as_tensor(response, dtype=projections.dtype, device=projections.device)
    filtered: torch.Tensor = torch.fft.irfft(spectrum * kernel)
    return filtered[..., :n]
