"""Ellipse-set phantoms: rasterisation and exact (analytic) line integrals.

An ellipse adds its ``value`` inside its boundary (Shepp-Logan convention: overlapping
ellipses add up). Centres and semi-axes are in mm in the geometry's frame (x right, y up,
origin on the rotation axis); the rotation angle is counter-clockwise from +x, radians.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from raw_data.errors import PhantomError
from raw_data.geometry import FanBeamGeometry, Geometry, ImageGrid

__all__ = ["Ellipse", "ellipse_line_integrals", "rasterize_ellipses"]


@dataclass(frozen=True)
class Ellipse:
    """One ellipse of a phantom.

    Attributes:
        value: added inside the ellipse (for CT phantoms, attenuation in 1/mm).
        center_mm: centre ``(x, y)``, mm.
        axes_mm: semi-axes ``(a, b)``, mm; ``a`` lies along the rotated x axis.
        angle_rad: rotation, radians, counter-clockwise.
    """

    value: float
    center_mm: tuple[float, float]
    axes_mm: tuple[float, float]
    angle_rad: float = 0.0

    def __post_init__(self) -> None:
        numbers = (self.value, *self.center_mm, *self.axes_mm, self.angle_rad)
        if not all(math.isfinite(float(v)) for v in numbers):
            raise PhantomError(f"ellipse {self} holds a NaN or infinite number")
        if min(self.axes_mm) <= 0:
            raise PhantomError(f"ellipse semi-axes {self.axes_mm} mm, expected both > 0")

    def contains(self, x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Return whether each point ``(x, y)`` (mm, broadcastable arrays) lies inside."""
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        dx, dy = x - self.center_mm[0], y - self.center_mm[1]
        u = (dx * c + dy * s) / self.axes_mm[0]
        v = (-dx * s + dy * c) / self.axes_mm[1]
        return np.asarray(u * u + v * v <= 1.0)

    def half_extent_mm(self) -> tuple[float, float]:
        """Return the half-width and half-height of the bounding box, mm."""
        a, b = self.axes_mm
        c, s = math.cos(self.angle_rad), math.sin(self.angle_rad)
        return math.hypot(a * c, b * s), math.hypot(a * s, b * c)


def rasterize_ellipses(
    ellipses: Iterable[Ellipse], grid: ImageGrid, *, supersample: int = 4
) -> npt.NDArray[np.float64]:
    """Sample a phantom on a pixel grid, averaging ``supersample**2`` points per pixel.

    Parameters:
        ellipses: the phantom.
        grid: the pixel grid (mm); see :mod:`raw_data.geometry` for pixel coordinates.
        supersample: points per pixel side; the average approximates the pixel's mean.

    Returns:
        The image, shape ``(rows, cols)``, in the ellipses' value units.

    Raises:
        PhantomError: ``supersample`` < 1.
    """
    if supersample < 1:
        raise PhantomError(f"supersample is {supersample}, expected an integer >= 1")
    rows, cols = grid.shape
    h = grid.pixel_size_mm
    sub = ((np.arange(supersample) + 0.5) / supersample - 0.5) * h
    xs = (grid.x_mm()[:, None] + sub[None, :]).ravel()  # (cols * ss,)
    ys = (grid.y_mm()[:, None] - sub[None, :]).ravel()  # (rows * ss,)
    fine = np.zeros((rows * supersample, cols * supersample))
    for e in ellipses:
        hx, hy = e.half_extent_mm()
        ci = np.nonzero(np.abs(xs - e.center_mm[0]) <= hx + h)[0]
        ri = np.nonzero(np.abs(ys - e.center_mm[1]) <= hy + h)[0]
        if ci.size == 0 or ri.size == 0:
            continue
        block = e.contains(xs[None, ci], ys[ri, None])
        fine[ri[0] : ri[-1] + 1, ci[0] : ci[-1] + 1] += e.value * block
    image: npt.NDArray[np.float64] = fine.reshape(rows, supersample, cols, supersample).mean(axis=(1, 3))
    return image


def _parallel_coordinates(
    geometry: Geometry,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Return ``(theta, t)`` of every ray, shape ``(views, detectors)``, radians and mm."""
    if isinstance(geometry, FanBeamGeometry):
        gamma = geometry.fan_angles()[None, :]
        theta = geometry.angles[:, None] - gamma
        t = geometry.source_to_isocenter_mm * np.sin(gamma) + 0 * theta
        return theta, t
    theta = geometry.angles[:, None] + 0 * geometry.detector_positions_mm()[None, :]
    return theta, geometry.detector_positions_mm()[None, :] + 0 * theta


def ellipse_line_integrals(ellipses: Iterable[Ellipse], geometry: Geometry) -> npt.NDArray[np.float64]:
    """Compute the exact line integral of a phantom along every ray of a geometry.

    Parameters:
        ellipses: the phantom (values in 1/mm give dimensionless line integrals).
        geometry: parallel- or fan-beam geometry (mm, radians).

    Returns:
        Sinogram, shape ``(views, detectors)``: value times chord length (mm), summed.
    """
    theta, t = _parallel_coordinates(geometry)
    # The ray directions' cosines and sines are shared by every ellipse; each ellipse's own
    # rotation then costs products, not new trigonometric functions over every ray.
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    out = np.zeros_like(t)
    for e in ellipses:
        a, b = e.axes_mm
        shift = t - (e.center_mm[0] * cos_t + e.center_mm[1] * sin_t)
        c, s = math.cos(e.angle_rad), math.sin(e.angle_rad)
        s2 = (a * (cos_t * c + sin_t * s)) ** 2 + (b * (sin_t * c - cos_t * s)) ** 2
        out += e.value * 2 * a * b * np.sqrt(np.clip(s2 - shift**2, 0, None)) / s2
    return out
