"""A fixed fan-beam back-projection as a sparse matrix, for models that learn on sinograms.

:func:`raw_data.fbp` back-projects pixel by pixel with gathers, which is right for one
reconstruction but too slow inside a training loop that runs it (and its transpose) on
every batch. For a fixed geometry the operator is a constant sparse matrix: each pixel reads
two neighbouring detector elements per view, linearly interpolated and weighted by
``1 / L**2`` (``L`` the source-to-pixel distance, mm), exactly as
``raw_data.backprojection.fan_backproject`` does, times the ``2 pi / views`` quadrature
weight of :func:`raw_data.fbp`. Built once per geometry, it is applied with a CSR
matrix product, and its transpose gives the gradient.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import torch

from raw_data import FanBeamGeometry

__all__ = ["FanBackProjector"]


class _Apply(torch.autograd.Function):
    """``y = A x`` with ``dL/dx = A^T dL/dy``, for CSR ``A`` and its precomputed transpose."""

    @staticmethod
    def forward(ctx: Any, columns: torch.Tensor, matrix: torch.Tensor, transpose: torch.Tensor) -> torch.Tensor:
        ctx.transpose = transpose
        return matrix @ columns

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transpose @ grad.contiguous(), None, None


@functools.lru_cache(maxsize=4)
def _matrices(geometry: FanBeamGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the back-projection matrix ``(pixels, views * detectors)`` and its transpose, CSR."""
    rows, cols = geometry.image.shape
    n_det = geometry.n_detectors
    y = torch.as_tensor(geometry.image.y_mm(), dtype=torch.float64)
    x = torch.as_tensor(geometry.image.x_mm(), dtype=torch.float64)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    xx, yy = xx.reshape(1, -1), yy.reshape(1, -1)
    beta = torch.as_tensor(geometry.angles, dtype=torch.float64)[:, None]
    sin, cos = torch.sin(beta), torch.cos(beta)
    vx = xx - geometry.source_to_isocenter_mm * sin  # pixel minus source position, mm
    vy = yy + geometry.source_to_isocenter_mm * cos
    gamma = torch.atan2(sin * vy + cos * vx, cos * vy - sin * vx)
    position = gamma / geometry.angular_pitch_rad + n_det // 2  # detector index, fractional
    weight = (2 * math.pi / geometry.n_views) / (vx * vx + vy * vy)
    lower = torch.floor(position)
    frac = position - lower
    lower_index = lower.long()
    pixel = torch.arange(rows * cols).expand_as(lower_index)
    view = torch.arange(geometry.n_views)[:, None].expand_as(lower_index)
    row_idx, col_idx, values = [], [], []
    for index, share in ((lower_index, 1 - frac), (lower_index + 1, frac)):
        inside = (index >= 0) & (index < n_det)  # outside the detector reads zero, as in raw_data
        row_idx.append(pixel[inside])
        col_idx.append((view * n_det + index)[inside])
        values.append((share * weight)[inside])
    coo = torch.sparse_coo_tensor(
        torch.stack([torch.cat(row_idx), torch.cat(col_idx)]),
        torch.cat(values).float(),
        (rows * cols, geometry.n_views * n_det),
        check_invariants=True,
    ).coalesce()
    with warnings.catch_warnings():
        # CSR is flagged "beta"; the two operations used here (matrix times dense) are stable.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
        return coo.to_sparse_csr(), coo.t().coalesce().to_sparse_csr()


class FanBackProjector:
    """Back-project ``(..., views, detectors)`` filtered projections onto the geometry's grid.

    Attributes:
        geometry: the fan-beam geometry (mm, radians) the matrix was built for.
    """

    def __init__(self, geometry: FanBeamGeometry) -> None:
        self.geometry = geometry
        self._matrix, self._transpose = _matrices(geometry)

    def __call__(self, projections: torch.Tensor) -> torch.Tensor:
        """Return ``(..., rows, cols)``: for each pixel, the weighted sum over views.

        Differentiable with respect to ``projections``; float32 on the CPU.
        """
        views, detectors = self.geometry.sinogram_shape
        lead = projections.shape[:-2]
        columns = projections.reshape(-1, views * detectors).T.contiguous()
        image: torch.Tensor = _Apply.apply(columns, self._matrix, self._transpose)  # type: ignore[no-untyped-call]
        return image.T.reshape(*lead, *self.geometry.image.shape)
