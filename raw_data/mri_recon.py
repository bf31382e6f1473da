"""MRI reconstruction of Cartesian k-space: inverse FFT, then root-sum-of-squares or
coil-map combination. Undersampled data are reconstructed zero-filled (no parallel-imaging
unfolding), so aliasing stays visible."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from raw_data.errors import DataShapeError
from raw_data.kspace import KSpace, ifft2c
from raw_data.sinogram import check_finite

# KSpace checks its data on construction, but its arrays stay writable afterwards.
_FIX_KSPACE = "fix or drop the corrupt lines before reconstruction"
_FIX_IMAGES = "fix the k-space they came from"

__all__ = ["coil_images", "combine_coils", "reconstruct_kspace", "root_sum_of_squares"]

_METHODS = ("auto", "rss", "coil-maps")


def coil_images(kspace: KSpace) -> npt.NDArray[np.complex64]:
    """Inverse-FFT each coil and crop readout (and phase) oversampling to the recon matrix.

    Returns:
        complex64 ``(coils, rows, cols)`` with ``(rows, cols) = kspace.recon_shape``.

    Raises:
        NonFiniteDataError: the k-space holds NaN or inf (one would spread to every pixel).
    """
    check_finite(kspace.data, "k-space", fix=_FIX_KSPACE)
    images = ifft2c(kspace.data)
    rows, cols = kspace.recon_shape
    r0 = images.shape[1] // 2 - rows // 2
    c0 = images.shape[2] // 2 - cols // 2
    cropped: npt.NDArray[np.complex64] = images[:, r0 : r0 + rows, c0 : c0 + cols].astype(np.complex64)
    return cropped


def root_sum_of_squares(images: npt.NDArray[np.complexfloating]) -> npt.NDArray[np.float32]:
    """Combine coil images ``(coils, rows, cols)`` by root-sum-of-squares (magnitude).

    Raises:
        NonFiniteDataError: the images hold NaN or inf.
    """
    check_finite(images, "coil images", fix=_FIX_IMAGES)
    combined: npt.NDArray[np.float32] = np.sqrt((np.abs(images) ** 2).sum(axis=0)).astype(np.float32)
    return combined


def combine_coils(
    images: npt.NDArray[np.complexfloating], maps: npt.NDArray[np.complexfloating]
) -> npt.NDArray[np.complex64]:
    """Combine coil images with their sensitivities: ``sum(conj(S) I) / sum(|S|**2)``.

    Parameters:
        images: complex ``(coils, rows, cols)``.
        maps: complex ``(coils, rows, cols)`` sensitivities.

    Returns:
        complex64 ``(rows, cols)``; zero where every sensitivity vanishes.

    Raises:
        DataShapeError: the two shapes differ.
        NonFiniteDataError: images or maps hold NaN or inf.
    """
    if images.shape != maps.shape:
        raise DataShapeError(f"coil images {images.shape} and maps {maps.shape} differ in shape")
    check_finite(images, "coil images", fix=_FIX_IMAGES)
    check_finite(maps, "coil maps", fix="fix or re-estimate the sensitivity maps")
    weight = (np.abs(maps) ** 2).sum(axis=0)
    combined = (np.conj(maps) * images).sum(axis=0)
    safe = np.where(weight > 1e-12, weight, 1.0)
    return np.where(weight > 1e-12, combined / safe, 0).astype(np.complex64)


def reconstruct_kspace(kspace: KSpace, *, method: str = "auto") -> npt.NDArray[np.float32]:
    """Reconstruct a magnitude image from k-space.

    Parameters:
        kspace: the k-space slice (missing lines are zero).
        method: ``"coil-maps"`` (needs ``kspace.coil_maps``), ``"rss"``, or ``"auto"``
            (coil maps when available, otherwise root-sum-of-squares).

    Returns:
        float32 magnitude ``(rows, cols)`` in the units of the object (unitary FFT).

    Raises:
        DataShapeError: ``method`` is unknown, or ``"coil-maps"`` without maps.
        NonFiniteDataError: the k-space (or its coil maps) hold NaN or inf.
    """
    if method not in _METHODS:
        raise DataShapeError(f"method {method!r} is unknown; choose one of {', '.join(_METHODS)}")
    images = coil_images(kspace)
    if method == "coil-maps" or (method == "auto" and kspace.coil_maps is not None):
        if kspace.coil_maps is None:
            raise DataShapeError(
                "method 'coil-maps' needs coil sensitivity maps; this k-space has none, use method='rss'"
            )
        return np.abs(combine_coils(images, kspace.coil_maps)).astype(np.float32)
    return root_sum_of_squares(images)
