"""Filtered back-projection for parallel-beam and equiangular fan-beam sinograms, in torch.

Differentiable with respect to the sinogram, batched over slices, and run on the
sinogram's device. Parallel beam needs equally spaced views over 180 degrees (or a multiple);
fan beam needs equally spaced views over a full 360-degree rotation (no short-scan weights).
"""

from __future__ import annotations

import math

import torch

from raw_data._tensors import as_batch, check_finite_tensor
from raw_data.backprojection import (
    circle_mask,
    fan_backproject,
    parallel_backproject,
)
from raw_data.errors import GeometryError
from raw_data.filters import (
    FILTERS,
    check_filter,
    fan_response,
    filter_projections,
    padded_length,
    parallel_response,
)
from raw_data.geometry import FanBeamGeometry, Geometry

__all__ = ["FILTERS", "fbp"]


def _check_coverage(geometry: Geometry) -> None:
    """Raise unless the views are equally spaced over a whole multiple of the needed range."""
    angles = geometry.angles
    if isinstance(geometry, FanBeamGeometry):
        needed, what = 2 * math.pi, "360 degrees (full rotation)"
    else:
        needed, what = math.pi, "180 degrees"
    if angles.size < 2:
        raise GeometryError(f"FBP needs at least 2 views, got {angles.size}")
    step = (angles[-1] - angles[0]) / (angles.size - 1)
    if step <= 0 or abs(angles - (angles[0] + step * range(angles.size))).max() > 1e-3 * abs(step) + 1e-9:
        raise GeometryError(
            "FBP needs equally spaced, increasing view angles; resample the views or use an "
            "iterative reconstruction with forward_project/back_project"
        )
    turns = step * angles.size / needed
    if turns < 0.99 or abs(turns - round(turns)) > 0.01:
        raise GeometryError(
            f"views cover {math.degrees(step * angles.size):.1f} degrees; this FBP needs "
            f"{what} or a whole multiple (short-scan weighting is not implemented)"
        )


def fbp(
    sinogram: torch.Tensor,
    geometry: Geometry,
    filter_name: str = "ramp",
    *,
    circle: bool = True,
) -> torch.Tensor:
    """Reconstruct attenuation images from line integrals by filtered back-projection.

    Parameters:
        sinogram: line integrals (dimensionless), shape ``(views, detectors)`` or
            ``(slices, views, detectors)``, matching ``geometry.sinogram_shape``.
        geometry: parallel-beam (views over 180 degrees) or fan-beam (views over 360 degrees).
        filter_name: one of ``"ramp"``, ``"shepp-logan"``, ``"cosine"``, ``"hann"``.
        circle: set pixels outside the circle seen by every view (and inscribed in the grid)
            to zero.

    Returns:
        Attenuation, 1/mm, shape ``(rows, cols)`` or ``(slices, rows, cols)`` on
        ``geometry.image``; same dtype and device as the sinogram.

    Raises:
        DataShapeError: the sinogram's shape does not match the geometry.
        NonFiniteDataError: the sinogram holds NaN or inf (one would spread to every pixel).
        GeometryError: unknown filter, or views not equally spaced over the needed range.
    """
    check_filter(filter_name)
    batch, single = as_batch(sinogram, geometry.sinogram_shape, "sinogram", "(views, detectors)")
    check_finite_tensor(sinogram, "sinogram", "fix or drop the corrupt views before reconstruction")
    _check_coverage(geometry)
    length = padded_length(geometry.n_detectors)
    if isinstance(geometry, FanBeamGeometry):
        gamma = torch.as_tensor(geometry.fan_angles(), dtype=batch.dtype, device=batch.device)
        weighted = batch * (geometry.source_to_isocenter_mm * torch.cos(gamma))
        response = fan_response(filter_name, length, geometry.angular_pitch_rad)
        filtered = filter_projections(weighted, response)
        image = fan_backproject(filtered, geometry) * (2 * math.pi / geometry.n_views)
    else:
        response = parallel_response(filter_name, length)
        filtered = filter_projections(batch, response) / geometry.detector_pitch_mm
        image = parallel_backproject(filtered, geometry) * (math.pi / geometry.n_views)
    if circle:
        image = image * circle_mask(geometry, image.device).to(image.dtype)
    return image[0] if single else image
