"""Differentiable CT forward projector (Joseph's method) and its exact adjoint, in torch.

Each ray is sampled once per image column (or row, whichever axis it runs closer to) with
linear interpolation between the two nearest pixels, weighted by the path length per
step. :func:`back_project` applies the exact transpose of the same sparse operator, so the
pair passes a dot-product test to rounding error, and both are ``torch.autograd``
functions whose backward pass is the other one. Work runs in chunks of rays, on the
input's device, batched over slices.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from raw_data._tensors import as_batch, check_finite_tensor
from raw_data.geometry import Geometry, ParallelBeamGeometry

__all__ = ["back_project", "forward_project"]

_PAD = 2  # zero border so that clamped samples off the grid read zeros
_SAMPLES_PER_CHUNK = 1 << 21


@dataclass(frozen=True)
class _RaySet:
    """Rays that run closer to one image axis, as affine sample positions ``a + b * step``."""

    ray: torch.Tensor  # index into the flattened (views * detectors) sinogram
    a: torch.Tensor  # padded coordinate across the stepping axis at step 0
    b: torch.Tensor  # its increment per step
    weight: torch.Tensor  # path length per step, mm
    along_cols: bool  # True: one sample per column, interpolate between rows


@dataclass(frozen=True)
class _Plan:
    rows: int
    cols: int
    n_rays: int
    sets: tuple[_RaySet, ...]


def _rays(geometry: Geometry) -> tuple[npt.NDArray[np.float64], ...]:
    """Return each ray's point and unit direction, flattened in (views, detectors) order."""
    if isinstance(geometry, ParallelBeamGeometry):
        theta = geometry.angles[:, None]
        t = geometry.detector_positions_mm()[None, :]
        px, py = t * np.cos(theta), t * np.sin(theta)
        dx, dy = -np.sin(theta) + 0 * t, np.cos(theta) + 0 * t
    else:
        beta = geometry.angles[:, None]
        gamma = geometry.fan_angles()[None, :]
        d = geometry.source_to_isocenter_mm
        px, py = d * np.sin(beta) + 0 * gamma, -d * np.cos(beta) + 0 * gamma
        dx, dy = -np.sin(beta - gamma), np.cos(beta - gamma)
    return tuple(np.ravel(v) for v in (px, py, dx, dy))


@functools.lru_cache(maxsize=16)
def _plan(geometry: Geometry, device: torch.device, dtype: torch.dtype) -> _Plan:
    rows, cols = geometry.image.shape
    h = geometry.image.pixel_size_mm
    cy, cx = rows // 2, cols // 2  # pixel indices of the rotation axis
    px, py, dx, dy = _rays(geometry)
    # Rays that miss the grid's circumscribed circle contribute nothing: skip them.
    hits = np.abs(px * dy - py * dx) <= geometry.image.half_diagonal_mm + 2 * h
    along_cols = np.abs(dx) >= np.abs(dy)
    sets = []
    for cols_mode in (True, False):
        sel = np.nonzero(hits & (along_cols == cols_mode))[0]
        if sel.size == 0:
            continue
        x0, y0, ux, uy = px[sel] / h, py[sel] / h, dx[sel], dy[sel]
        if cols_mode:
            s = uy / ux
            a = cy + _PAD - y0 + (x0 + cx) * s
            b, w = -s, h / np.abs(ux)
        else:
            s = ux / uy
            a = cx + _PAD + x0 + (cy - y0) * s
            b, w = -s, h / np.abs(uy)
        sets.append(
            _RaySet(
                ray=torch.as_tensor(sel, device=device),
                a=torch.as_tensor(a, dtype=dtype, device=device),
                b=torch.as_tensor(b, dtype=dtype, device=device),
                weight=torch.as_tensor(w, dtype=dtype, device=device),
                along_cols=cols_mode,
            )
        )
    return _Plan(rows, cols, px.size, tuple(sets))


def _taps(plan: _Plan, rays: _RaySet, lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Return flat indices of the first tap, the second tap's weight, and the tap stride."""
    width = plan.cols + 2 * _PAD
    steps = plan.cols if rays.along_cols else plan.rows
    limit = (plan.rows if rays.along_cols else plan.cols) + _PAD
    k = torch.arange(steps, device=rays.a.device, dtype=rays.a.dtype)
    pos = torch.addcmul(rays.a[lo:hi, None], rays.b[lo:hi, None], k).clamp_(0, limit)
    # Positions are clamped to >= 0, so truncation is floor; int32 halves index traffic.
    base = pos.to(torch.int32)
    frac = pos.frac_()
    kk = torch.arange(_PAD, steps + _PAD, device=rays.a.device, dtype=torch.int32)
    if rays.along_cols:
        flat = base.mul_(width).add_(kk)
        return flat.reshape(-1), frac.reshape(-1), width
    flat = base.add_(kk[:, None].mul(width).reshape(1, -1))
    return flat.reshape(-1), frac.reshape(-1), 1


def _chunk_len(plan: _Plan, rays: _RaySet, slices: int) -> int:
    steps = plan.cols if rays.along_cols else plan.rows
    return max(1, _SAMPLES_PER_CHUNK // (steps * max(1, slices)))


def _project(image: torch.Tensor, plan: _Plan) -> torch.Tensor:
    slices = image.shape[0]
    padded = torch.nn.functional.pad(image, (_PAD,) * 4).reshape(slices, -1)
    out = image.new_zeros(slices, plan.n_rays)
    for rays in plan.sets:
        n = rays.ray.numel()
        chunk = _chunk_len(plan, rays, slices)
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            idx, frac, stride = _taps(plan, rays, lo, hi)
            v0 = padded.index_select(1, idx)
            v1 = padded[:, stride:].index_select(1, idx)
            line = torch.lerp(v0, v1, frac).reshape(slices, hi - lo, -1).sum(-1)
            out[:, rays.ray[lo:hi]] = line * rays.weight[lo:hi]
    return out


def _adjoint(sinogram: torch.Tensor, plan: _Plan) -> torch.Tensor:
    slices = sinogram.shape[0]
    rows, cols = plan.rows + 2 * _PAD, plan.cols + 2 * _PAD
    padded = sinogram.new_zeros(slices, rows * cols)
    for rays in plan.sets:
        n = rays.ray.numel()
        chunk = _chunk_len(plan, rays, slices)
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            idx, frac, stride = _taps(plan, rays, lo, hi)
            idx = idx.long()  # index_add_ along dim 1 is far slower with int32 indices
            y = sinogram[:, rays.ray[lo:hi]] * rays.weight[lo:hi]
            steps = idx.numel() // (hi - lo)
            spread = y[:, :, None].expand(-1, -1, steps).reshape(slices, -1)
            padded.index_add_(1, idx, spread * (1 - frac))
            padded[:, stride:].index_add_(1, idx, spread * frac)
    image = padded.reshape(slices, rows, cols)
    return image[:, _PAD:-_PAD, _PAD:-_PAD].contiguous()


def _apply(fn: type[torch.autograd.Function], data: torch.Tensor, plan: _Plan) -> torch.Tensor:
    result: torch.Tensor = fn.apply(data, plan)  # type: ignore[no-untyped-call]
    return result


class _Forward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, image: torch.Tensor, plan: _Plan) -> torch.Tensor:
        ctx.plan = plan
        return _project(image, plan)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _apply(_Adjoint, grad, ctx.plan), None


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, sinogram: torch.Tensor, plan: _Plan) -> torch.Tensor:
        ctx.plan = plan
        return _adjoint(sinogram, plan)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _apply(_Forward, grad, ctx.plan), None


def forward_project(image: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Compute line integrals of an image along every ray of ``geometry``.

    Differentiable (the backward pass is :func:`back_project`), batched over slices, and
    run on the image's device.

    Parameters:
        image: attenuation, 1/mm, shape ``(rows, cols)`` or ``(slices, rows, cols)`` matching
            ``geometry.image.shape``.
        geometry: a parallel- or fan-beam geometry (mm, radians).

    Returns:
        Line integrals (dimensionless), shape ``(views, detectors)`` or
        ``(slices, views, detectors)``, same dtype and device as ``image``.

    Raises:
        DataShapeError: ``image`` is not a floating tensor of the grid's shape.
        NonFiniteDataError: ``image`` holds NaN or inf.
    """
    batch, single = as_batch(image, geometry.image.shape, "image", "(rows, cols)")
    check_finite_tensor(image, "image", "fix the attenuation values before projecting")
    plan = _plan(geometry, batch.device, batch.dtype)
    out = _apply(_Forward, batch.contiguous(), plan)
    out = out.reshape(batch.shape[0], *geometry.sinogram_shape)
    return out[0] if single else out


def back_project(sinogram: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Apply the exact adjoint (transpose) of :func:`forward_project`.

    This is the unfiltered, unweighted back-projection, what gradient-based reconstruction
    needs; for filtered back-projection use :func:`raw_data.fbp`.

    Parameters:
        sinogram: shape ``(views, detectors)`` or ``(slices, views, detectors)``.
        geometry: the geometry the sinogram belongs to (mm, radians).

    Returns:
        An image of shape ``(rows, cols)`` or ``(slices, rows, cols)``, units mm times the
        sinogram's units.

    Raises:
        DataShapeError: ``sinogram`` is not a floating tensor of the geometry's shape.
        NonFiniteDataError: ``sinogram`` holds NaN or inf.
    """
    batch, single = as_batch(sinogram, geometry.sinogram_shape, "sinogram", "(views, detectors)")
    check_finite_tensor(sinogram, "sinogram", "fix or drop the corrupt views before back-projecting")
    plan = _plan(geometry, batch.device, batch.dtype)
    flat = batch.reshape(batch.shape[0], -1).contiguous()
    out = _apply(_Adjoint, flat, plan)
    return out[0] if single else out
