"""CT measurement noise: detector blur, Poisson photon counts, electronic noise, log transform.

The measurement chain of an energy-integrating detector, per ray:

1. expected counts ``I = flux * exp(-p)`` for line integral ``p`` and incident ``flux``
   (photons per detector element per view, unattenuated);
2. detector cross-talk blurs ``I`` along the detector row (Gaussian, FWHM in elements);
3. photon counts are Poisson distributed around the blurred ``I``;
4. the read-out adds Gaussian electronic noise (standard deviation in counts);
5. counts are floored at ``MIN_COUNTS`` (a real scanner never logs a non-positive reading)
   and turned back into line integrals, ``-log(counts / flux)``.
"""

from __future__ import annotations

import math

import torch

from raw_data._tensors import check_finite_tensor
from raw_data.errors import GeometryError

__all__ = ["MIN_COUNTS", "detector_blur", "make_generator", "simulate_measurement"]

MIN_COUNTS = 1.0


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """Return a torch generator seeded with ``seed`` on ``device``, for reproducible noise."""
    return torch.Generator(device=device).manual_seed(int(seed))


def detector_blur(signal: torch.Tensor, fwhm: float) -> torch.Tensor:
    """Blur along the last (detector) axis with a Gaussian of ``fwhm`` detector elements.

    Parameters:
        signal: shape ``(..., detectors)``.
        fwhm: full width at half maximum, detector elements; 0 returns ``signal`` unchanged.

    Returns:
        The blurred signal, same shape; edges are extended by replication.

    Raises:
        GeometryError: ``fwhm`` is negative or not finite.
    """
    if not (math.isfinite(fwhm) and fwhm >= 0):
        raise GeometryError(f"detector blur FWHM is {fwhm}, expected a finite number >= 0")
    if fwhm == 0:
        return signal
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    half = max(1, math.ceil(3 * sigma))
    k = torch.arange(-half, half + 1, dtype=signal.dtype, device=signal.device)
    kernel = torch.exp(-0.5 * (k / sigma) ** 2)
    kernel = (kernel / kernel.sum()).reshape(1, 1, -1)
    shape = signal.shape
    flat = signal.reshape(-1, 1, shape[-1])
    flat = torch.nn.functional.pad(flat, (half, half), mode="replicate")
    return torch.nn.functional.conv1d(flat, kernel).reshape(shape)


def simulate_measurement(
    line_integrals: torch.Tensor,
    incident_flux: float,
    electronic_noise: float,
    *,
    blur_fwhm: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Turn noiseless line integrals into measured ones (blur, Poisson, electronic noise, log).

    Parameters:
        line_integrals: noiseless line integrals (dimensionless), shape ``(..., detectors)``.
        incident_flux: unattenuated photons per detector element per view (the dose).
        electronic_noise: standard deviation of the read-out noise, photon counts.
        blur_fwhm: detector cross-talk FWHM, detector elements.
        generator: torch generator for reproducible noise (see :func:`make_generator`).

    Returns:
        Measured line integrals, same shape, dtype and device.

    Raises:
        GeometryError: non-positive flux or negative noise or blur.
        NonFiniteDataError: the line integrals hold NaN or inf.
    """
    if not (math.isfinite(incident_flux) and incident_flux > 0):
        raise GeometryError(f"incident flux is {incident_flux}, expected photons > 0")
    if not (math.isfinite(electronic_noise) and electronic_noise >= 0):
        raise GeometryError(f"electronic noise is {electronic_noise}, expected counts >= 0")
    check_finite_tensor(line_integrals, "line integrals", "fix the projection before simulating noise")
    expected = detector_blur(incident_flux * torch.exp(-line_integrals), blur_fwhm)
    counts = torch.poisson(expected, generator=generator)
    if electronic_noise > 0:
        noise = torch.randn(counts.shape, generator=generator, dtype=counts.dtype, device=counts.device)
        counts = counts + electronic_noise * noise
    return -torch.log(counts.clamp(min=MIN_COUNTS) / incident_flux)
