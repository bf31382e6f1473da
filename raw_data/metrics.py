"""Image-quality metrics against ground truth: PSNR, SSIM and lesion contrast-to-noise ratio."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.metrics import structural_similarity

from raw_data.errors import DataShapeError

__all__ = ["background_ring", "lesion_cnr", "psnr", "ssim"]

Image = npt.NDArray[np.floating]


def _pair(image: Image, reference: Image) -> tuple[Image, Image]:
    a, b = np.asarray(image, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise DataShapeError(f"image {a.shape} and reference {b.shape} must be 2D (rows, cols) of equal shape")
    return a, b


def _range(reference: Image, data_range: float | None) -> float:
    value = float(reference.max() - reference.min()) if data_range is None else data_range
    if not value > 0:
        raise DataShapeError(f"data range is {value}; pass data_range > 0 for a flat reference")
    return value


def psnr(image: Image, reference: Image, *, data_range: float | None = None) -> float:
    """Return the peak signal-to-noise ratio of ``image`` against ``reference``, dB.

    Parameters:
        image, reference: 2D arrays of equal shape, same units.
        data_range: peak-to-peak value; defaults to the reference's max minus min.

    Raises:
        DataShapeError: shapes differ, or the reference is flat and no range is given.
    """
    a, b = _pair(image, reference)
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(_range(b, data_range) ** 2 / mse)


def ssim(image: Image, reference: Image, *, data_range: float | None = None) -> float:
    """Return the structural similarity (Wang et al. 2004, 7x7 window) of two 2D images.

    Raises:
        DataShapeError: shapes differ, or the reference is flat and no range is given.
    """
    a, b = _pair(image, reference)
    score = structural_similarity(b, a, data_range=_range(b, data_range))  # type: ignore[no-untyped-call]
    return float(score)


def background_ring(
    lesion: npt.NDArray[np.bool_], inner_px: float = 2.0, outer_px: float = 6.0
) -> npt.NDArray[np.bool_]:
    """Return the ring of pixels ``inner_px`` to ``outer_px`` away from a lesion mask."""
    distance = ndimage.distance_transform_edt(~np.asarray(lesion, dtype=bool))
    return np.asarray((distance > inner_px) & (distance <= outer_px))


def lesion_cnr(
    image: Image,
    lesion: npt.NDArray[np.bool_],
    background: npt.NDArray[np.bool_] | None = None,
) -> float:
    """Return the lesion contrast-to-noise ratio ``|mean(lesion) - mean(bg)| / std(bg)``.

    Parameters:
        image: 2D image.
        lesion: boolean mask of the lesion, same shape.
        background: boolean mask of the background; defaults to :func:`background_ring`.

    Returns:
        The CNR (dimensionless); ``inf`` if the background is perfectly flat.

    Raises:
        DataShapeError: masks of the wrong shape, or an empty lesion or background.
    """
    img = np.asarray(image, dtype=np.float64)
    lesion = np.asarray(lesion, dtype=bool)
    bg = background_ring(lesion) if background is None else np.asarray(background, dtype=bool)
    if lesion.shape != img.shape or bg.shape != img.shape:
        raise DataShapeError(f"masks {lesion.shape}, {bg.shape} must match the image {img.shape}")
    if not lesion.any() or bg.sum() < 2:
        raise DataShapeError("lesion or background mask is empty; CNR needs both")
    noise = float(img[bg].std())
    contrast = abs(float(img[lesion].mean() - img[bg].mean()))
    return math.inf if noise == 0 else contrast / noise
