"""Pixel-driven back-projectors for filtered back-projection, in torch and differentiable.

Parallel beam uses a shift-and-add scheme. Along an image row (or column, for views closer
to vertical) the detector coordinate of the pixels is affine, ``u = step * j + offset``.
Each view's filtered projection is therefore resampled once, by linear interpolation, onto a
fine grid ``step / OVERSAMPLE`` apart and stored in polyphase order; every image row is then
a contiguous slice of that fine profile. A row's offset generally falls between two fine
samples, so the two neighbouring slices are read and blended with the row's fractional
offset. The result is linear interpolation of the detector samples, except within a fine
step of a detector sample, where it rounds the kink of the piecewise-linear profile slightly.

On the CPU the resampling and the sum run in compiled loops (:mod:`raw_data._kernels`),
a few views at a time, so that the work stays in the caches whatever their size; autograd
goes through the same loops (their exact adjoint is the backward pass). On other devices
the same scheme runs as torch ops, which gather every line's windows before summing them.

Fan beam interpolates each pixel's detector position directly (it is not affine along rows)
and applies the ``1 / L**2`` distance weight of the equiangular fan-beam FBP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from raw_data import _kernels
from raw_data.geometry import FanBeamGeometry, ParallelBeamGeometry

OVERSAMPLE = 8
_COMPILED_DTYPES = (torch.float32, torch.float64)  # what the compiled loops take
_VIEWS_PER_CHUNK = 8  # torch path: its gathered windows take 16 MiB per slice
_PIXELS_PER_FAN_CHUNK = 1 << 21


def _interpolate(profiles: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Linearly interpolate ``profiles (S, V, D)`` at ``positions (V, P)``, zero outside."""
    slices, _, n = profiles.shape
    padded = torch.nn.functional.pad(profiles, (1, 1))  # zeros at 0 and n + 1
    pos = (positions + 1).clamp_(0, n + 1)
    base = pos.floor().clamp_(max=n)  # so that base + 1 stays inside the padding
    frac = (pos - base).to(profiles.dtype)
    index = base.long()
    v0 = torch.gather(padded, 2, index.expand(slices, -1, -1))
    v1 = torch.gather(padded, 2, (index + 1).expand(slices, -1, -1))
    return torch.lerp(v0, v1, frac.expand(slices, -1, -1))


@dataclass(frozen=True)
class _Lines:
    """Where every image line finds its values in each view's fine profile (see module doc).

    Fine sample ``n`` of view ``v`` lies at detector coordinate ``scale[v] * (n + origin[v])``;
    pixel ``j`` of line ``i`` is ``blend[0, v, i] * F(fine[0, v, i] + m * j) + blend[1, v, i] *
    F(fine[1, v, i] + m * j)``, where ``F`` is the profile interpolated at fine sample ``n``.
    """

    scale: torch.Tensor  # (V,) float64, detector units per fine sample
    origin: torch.Tensor  # (V,) float64, fine index of each view's first needed sample
    needed: torch.Tensor  # (V,) int32, fine samples each view needs from its origin on
    fine: torch.Tensor  # (2, V, lines) int32, from the origin
    blend: torch.Tensor  # (2, V, lines), dtype of the profiles
    length: int  # pixels per line
    detectors: int  # samples per profile


def _plan_lines(step: torch.Tensor, offset: torch.Tensor, length: int, profiles: torch.Tensor) -> _Lines:
    """Locate every line's two fine samples: ``step (V,)`` and ``offset (V, lines)`` in float64."""
    m = OVERSAMPLE
    exact = m * offset / step[:, None]  # each line's start in fine samples
    below = torch.floor(exact)
    weight = (exact - below).to(profiles.dtype)  # share of the next fine sample
    origin = below.min(dim=1).values
    rel = (below - origin[:, None]).int()  # int32: half the memory of int64, ample range
    needed = rel.max(dim=1).values + m * (length - 1) + 2
    fine, blend = torch.stack([rel, rel + 1]), torch.stack([1 - weight, weight])
    return _Lines(step / m, origin, needed, fine, blend, length, profiles.shape[2])


def _backproject_torch(profiles: torch.Tensor, plan: _Lines) -> torch.Tensor:
    """Back-project ``profiles (S, V, D)`` along the planned lines with torch ops: ``(S, lines, length)``.

    The reference for the compiled loops of :mod:`raw_data._kernels`, and the path off the
    CPU. It gathers every line's windows into memory before summing them (see ``_kernels``).
    """
    slices, views, _ = profiles.shape
    lines, length, m = plan.fine.shape[2], plan.length, OVERSAMPLE
    dev = profiles.device
    out = profiles.new_zeros(slices, lines, length)
    chunk = max(1, _VIEWS_PER_CHUNK // slices)
    for lo in range(0, views, chunk):
        hi = min(lo + chunk, views)
        phases = int(plan.needed[lo:hi].max()) // m + 2  # samples per polyphase branch
        n = torch.arange(m, device=dev)[:, None] + m * torch.arange(phases, device=dev)  # float64 below
        positions = plan.scale[lo:hi, None] * (n.reshape(-1) + plan.origin[lo:hi, None])
        poly = _interpolate(profiles[:, lo:hi], positions)  # (S, V, m * phases), polyphase order
        fine = plan.fine[:, lo:hi].long()
        start = (fine % m) * phases + fine // m + torch.arange(hi - lo, device=dev)[:, None] * (m * phases)
        start = start[None] + torch.arange(slices, device=dev)[:, None, None, None] * poly[0].numel()
        rows = poly.reshape(-1).unfold(0, length, 1).index_select(0, start.permute(0, 3, 1, 2).reshape(-1))
        weights = plan.blend[:, lo:hi].permute(2, 0, 1).reshape(1, lines, 1, -1)
        out = out + torch.matmul(weights, rows.view(slices, lines, -1, length)).view(slices, lines, length)
    return out


def _kernel_args(plan: _Lines) -> tuple[Any, ...]:
    return (*(t.numpy() for t in (plan.scale, plan.origin, plan.needed, plan.fine, plan.blend)), OVERSAMPLE)


class _Backproject(torch.autograd.Function):
    """The compiled back-projection along lines, on the CPU; its backward is the adjoint."""

    @staticmethod
    def forward(ctx: Any, profiles: torch.Tensor, plan: _Lines) -> torch.Tensor:
        ctx.plan = plan
        out = profiles.new_zeros(profiles.shape[0], plan.fine.shape[2], plan.length)
        _kernels.loops().backproject(profiles.detach().contiguous().numpy(), *_kernel_args(plan), out.numpy())
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _apply(_BackprojectAdjoint, grad, ctx.plan), None


class _BackprojectAdjoint(torch.autograd.Function):
    """The transpose of :class:`_Backproject`; its backward is :class:`_Backproject`."""

    @staticmethod
    def forward(ctx: Any, grad: torch.Tensor, plan: _Lines) -> torch.Tensor:
        ctx.plan = plan
        out = grad.new_zeros(grad.shape[0], plan.fine.shape[1], plan.detectors)
        _kernels.loops().backproject_adjoint(grad.detach().contiguous().numpy(), *_kernel_args(plan), out.numpy())
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _apply(_Backproject, grad, ctx.plan), None


def _apply(fn: type[torch.autograd.Function], *args: Any) -> torch.Tensor:
    result: torch.Tensor = fn.apply(*args)  # type: ignore[no-untyped-call]
    return result


def _shift_and_add(
    profiles: torch.Tensor, step: torch.Tensor, offset: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Return ``target`` plus, over views, ``profile_v(step_v * j + offset_v[line])`` at ``[:, line, j]``.

    Parameters:
        profiles: ``(S, V, D)`` filtered projections.
        step: ``(V,)`` float64, detector-coordinate increment per pixel along a line (nonzero).
        offset: ``(V, lines)`` float64, detector coordinate of each line's first pixel.
        target: ``(S, lines, length)`` accumulator; added to in place on the CPU when
            autograd does not track the profiles.
    """
    plan = _plan_lines(step, offset, target.shape[2], profiles)
    if profiles.device.type != "cpu" or profiles.dtype not in _COMPILED_DTYPES:
        return target + _backproject_torch(profiles, plan)
    if torch.is_grad_enabled() and profiles.requires_grad:
        return target + _apply(_Backproject, profiles, plan)
    _kernels.loops().backproject(profiles.detach().contiguous().numpy(), *_kernel_args(plan), target.detach().numpy())
    return target


def _line_geometry(
    geometry: ParallelBeamGeometry, row_mode: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the views summed along image rows (or columns), and their lines' coordinates.

    A view runs along rows when ``|cos| >= |sin|``: there the detector coordinate
    ``u = (x_j cos + y_i sin) / pitch + centre`` is affine in the column ``j``, with a step
    of ``pixel * cos / pitch``. The others run along columns (lines of the transposed
    image). Returns the view indices ``(V,)``, the step ``(V,)`` and each
    line's first coordinate ``(V, lines)``, in detector units, float64.
    """
    h = geometry.image.pixel_size_mm
    pitch = geometry.detector_pitch_mm
    centre = geometry.n_detectors // 2
    theta = torch.as_tensor(geometry.angles, dtype=torch.float64, device=device)
    cos, sin = torch.cos(theta), torch.sin(theta)
    y = torch.as_tensor(geometry.image.y_mm(), device=device)
    x = torch.as_tensor(geometry.image.x_mm(), device=device)
    views = torch.nonzero((cos.abs() >= sin.abs()) == row_mode).flatten()
    c, s = cos[views], sin[views]
    if row_mode:
        return views, h * c / pitch, (x[0] * c[:, None] + y[None, :] * s[:, None]) / pitch + centre
    return views, -h * s / pitch, (x[None, :] * c[:, None] + y[0] * s[:, None]) / pitch + centre


def parallel_backproject(filtered: torch.Tensor, geometry: ParallelBeamGeometry) -> torch.Tensor:
    """Back-project filtered parallel-beam projections onto the image grid (unweighted sum).

    Parameters:
        filtered: ``(S, views, detectors)``, filtered projections in detector units.
        geometry: the parallel-beam geometry (mm, radians).

    Returns:
        ``(S, rows, cols)``: the sum over views of each pixel's interpolated value.
    """
    slices = filtered.shape[0]
    rows, cols = geometry.image.shape
    image = filtered.new_zeros(slices, rows, cols)
    transposed = filtered.new_zeros(slices, cols, rows)  # for the views summed along columns
    for row_mode in (True, False):
        views, step, offset = _line_geometry(geometry, row_mode, filtered.device)
        if row_mode:
            image = _shift_and_add(filtered[:, views], step, offset, image)
        else:
            transposed = _shift_and_add(filtered[:, views], step, offset, transposed)
    return image + transposed.transpose(1, 2)


def fan_backproject(filtered: torch.Tensor, geometry: FanBeamGeometry) -> torch.Tensor:
    """Back-project filtered equiangular fan-beam projections with the ``1 / L**2`` weight.

    Parameters:
        filtered: ``(S, views, detectors)``, filtered projections.
        geometry: the fan-beam geometry (mm, radians).

    Returns:
        ``(S, rows, cols)``: the sum over views of ``Q(gamma') / L**2``, ``L`` in mm.
    """
    slices = filtered.shape[0]
    rows, cols = geometry.image.shape
    dev, dtype = filtered.device, filtered.dtype
    dist = geometry.source_to_isocenter_mm
    y = torch.as_tensor(geometry.image.y_mm(), dtype=dtype, device=dev)
    x = torch.as_tensor(geometry.image.x_mm(), dtype=dtype, device=dev)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    xx, yy = xx.reshape(1, -1), yy.reshape(1, -1)
    beta = torch.as_tensor(geometry.angles, dtype=dtype, device=dev)
    centre = geometry.n_detectors // 2
    per_chunk = max(1, _PIXELS_PER_FAN_CHUNK // (rows * cols))
    image = filtered.new_zeros(slices, rows * cols)
    for lo in range(0, geometry.n_views, per_chunk):
        b = beta[lo : lo + per_chunk, None]
        sin, cos = torch.sin(b), torch.cos(b)
        vx = xx - dist * sin  # pixel minus source position
        vy = yy + dist * cos
        gamma = torch.atan2(sin * vy + cos * vx, cos * vy - sin * vx)
        positions = gamma / geometry.angular_pitch_rad + centre
        values = _interpolate(filtered[:, lo : lo + per_chunk], positions)
        image = image + (values / (vx * vx + vy * vy)).sum(dim=1)
    return image.reshape(slices, rows, cols)


def field_of_view_radius_mm(geometry: ParallelBeamGeometry | FanBeamGeometry) -> float:
    """Return the radius of the circle every view sees, mm.

    Fan beam: half the geometry's field of view. Parallel beam: ``(n_detectors // 2 - 0.5) * pitch``,
    half a pitch inside the outermost detector centre (on the longer side when the count is even).
    """
    if isinstance(geometry, FanBeamGeometry):
        return geometry.field_of_view_mm / 2
    return (geometry.n_detectors // 2 - 0.5) * geometry.detector_pitch_mm


def circle_mask(geometry: ParallelBeamGeometry | FanBeamGeometry, device: torch.device) -> torch.Tensor:
    """Return a boolean ``(rows, cols)`` mask of pixels inside the reconstruction circle."""
    radius = min(field_of_view_radius_mm(geometry), geometry.image.radius_mm)
    y = torch.as_tensor(geometry.image.y_mm(), device=device)
    x = torch.as_tensor(geometry.image.x_mm(), device=device)
    return (y[:, None] ** 2 + x[None, :] ** 2) <= radius**2
