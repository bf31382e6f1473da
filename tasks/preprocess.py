"""Image preprocessing shared by the tasks: resampling to the model grid, CT and MR scaling.

Every image task sees the same physical frame: a 64 x 64 grid of 4 mm pixels (256 mm field
of view, the digital patients' field), rows top to bottom, columns left to right.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import torch

from raw_data import MU_WATER_PER_MM
from tasks.errors import TaskDataError

__all__ = [
    "MODEL_GRID",
    "MODEL_PIXEL_MM",
    "WINDOW_CENTRE_HU",
    "WINDOW_SCALE_HU",
    "attenuation_to_hu",
    "ct_window",
    "mr_normalise",
    "resample_to_model_grid",
]

MODEL_GRID = (64, 64)
"""Rows and columns of every image-domain model input."""
MODEL_PIXEL_MM = 4.0
"""Pixel side of the model grid, mm."""

# Brain window: the lesions sit in 40 HU brain; skull and air only need to saturate.
WINDOW_CENTRE_HU = 40.0
"""HU that maps to 0 in model units (brain)."""
WINDOW_SCALE_HU = 40.0
"""HU per model unit."""
_WINDOW_HALF_WIDTH_HU = 60.0


def attenuation_to_hu(mu: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert linear attenuation, 1/mm, to Hounsfield units (water at ``MU_WATER_PER_MM``)."""
    return (np.asarray(mu, dtype=np.float64) / MU_WATER_PER_MM - 1.0) * 1000.0


def ct_window(hu: torch.Tensor) -> torch.Tensor:
    """Map Hounsfield units to model units with a brain window.

    ``(clip(HU, -20, 100) - 40) / 40``: brain is 0, the window edges are -1.5 and +1.5.
    """
    lo, hi = WINDOW_CENTRE_HU - _WINDOW_HALF_WIDTH_HU, WINDOW_CENTRE_HU + _WINDOW_HALF_WIDTH_HU
    return (hu.clamp(lo, hi) - WINDOW_CENTRE_HU) / WINDOW_SCALE_HU


def mr_normalise(magnitude: torch.Tensor) -> torch.Tensor:
    """Scale a magnitude image to its typical tissue level: ``2 * (m / tissue - 1)``.

    MR intensities have arbitrary units that differ between scanners, sequences and coils.
    ``tissue`` is the median of the pixels brighter than a fifth of the 99th percentile (in a
    head, mostly brain), so brain maps near 0 whatever the scale.

    Raises:
        TaskDataError: the image has no signal.
    """
    values = magnitude.flatten().double()
    bright = torch.quantile(values, 0.99).item()
    tissue = values[values > 0.2 * bright].median().item() if bright > 0 else 0.0
    if not (math.isfinite(tissue) and tissue > 0):
        raise TaskDataError("MR image has no signal; the k-space is empty or corrupt")
    return (2.0 * (magnitude / tissue - 1.0)).float()


def resample_to_model_grid(image: npt.ArrayLike, pixel_size_mm: float, fill: float) -> torch.Tensor:
    """Resample a centred ``(rows, cols)`` image to the model grid, 4 mm pixels, 64 x 64.

    The image is scaled by ``pixel_size_mm / 4`` (bilinear, anti-aliased when shrinking),
    then cropped or padded with ``fill`` symmetrically about its centre.

    Parameters:
        image: values on square pixels, ``(rows, cols)``.
        pixel_size_mm: the image's pixel side, mm.
        fill: value for regions outside the image (air: -1000 HU, or 0 for MR).

    Returns:
        float32 ``(64, 64)``.

    Raises:
        TaskDataError: not 2D, not finite, or a pixel size that is not a positive number.
    """
    data = torch.as_tensor(np.asarray(image, dtype=np.float32))
    if data.ndim != 2:
        raise TaskDataError(f"image has shape {tuple(data.shape)}, expected one slice (rows, cols)")
    if not bool(torch.isfinite(data).all()):
        raise TaskDataError("image holds NaN or infinite values")
    if not (math.isfinite(pixel_size_mm) and pixel_size_mm > 0):
        raise TaskDataError(f"pixel size is {pixel_size_mm} mm, expected a positive number")
    scale = pixel_size_mm / MODEL_PIXEL_MM
    size = (max(1, round(data.shape[0] * scale)), max(1, round(data.shape[1] * scale)))
    if size != tuple(data.shape):
        data = torch.nn.functional.interpolate(
            data[None, None], size=size, mode="bilinear", align_corners=False, antialias=True
        )[0, 0]
    out = torch.full(MODEL_GRID, float(fill), dtype=torch.float32)
    # Source and destination windows of the centred overlap, per axis.
    src, dst = [], []
    for have, want in zip(data.shape, MODEL_GRID, strict=True):
        n = min(have, want)
        src.append(slice((have - n) // 2, (have - n) // 2 + n))
        dst.append(slice((want - n) // 2, (want - n) // 2 + n))
    out[dst[0], dst[1]] = data[src[0], src[1]]
    return out
