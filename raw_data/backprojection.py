"""Pixel-driven back-projectors for filtered back-projection, in torch and differentiable.

Parallel beam uses a shift-and-add scheme. Along an image row (or column, for views closer
to vertical) the detector coordinate of the pixels is affine, ``u = step * j + offset``.
Each view's filtered projection is therefore resampled once, by linear interpolation, onto a
fine grid ``step / OVERSAMPLE`` apart and stored in polyphase order; every image row is then
a contiguous slice of that fine profile. A row's offset generally falls between two fine
samples, so the two neighbouring slices are read and blended with the row's fractional
offset (one batched matrix product over the views also does the sum). The result is linear
interpolation of the detector samples, except within a fine step of a detector sample,
where it rounds the kink of the piecewise-linear profile slightly.

Fan beam interpolates each pixel's detector position directly (it is not affine along rows)
and applies the ``1 / L**2`` distance weight of the equiangular fan-beam FBP.
"""

from __future__ import annotations

import torch

from raw_data.geometry import FanBeamGeometry, ParallelBeamGeometry

OVERSAMPLE = 8
_VIEWS_PER_CHUNK = 8
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


def _shift_and_add(
    profiles: torch.Tensor,
    step: torch.Tensor,
    offset: torch.Tensor,
    target: torch.Tensor,
    buffer: torch.Tensor | None,
) -> None:
    """Add, over views, ``profile_v(step_v * j + offset_v[line])`` into ``target[:, line, j]``.

    Parameters:
        profiles: ``(S, V, D)`` filtered projections.
        step: ``(V,)`` detector-coordinate increment per pixel along a line (nonzero).
        offset: ``(V, lines)`` detector coordinate of each line's first pixel.
        target: ``(S, lines, length)`` accumulator, contiguous.
        buffer: scratch memory for the gathered rows (``2 * S * V * lines * length``
            elements at least), or None when autograd must track them.
    """
    slices, views, _ = profiles.shape
    lines, length = target.shape[1:]
    m = OVERSAMPLE
    exact = m * offset / step[:, None]  # each line's start in fine samples
    below = torch.floor(exact)
    weight = (exact - below).to(profiles.dtype)  # share of the next fine sample, (V, lines)
    fine = below.long()
    first = fine.min(dim=1).values
    span = int((fine.max(dim=1).values - first).max()) + m * (length - 1) + 2
    phases = span // m + 2  # samples per polyphase branch
    # Fine sample p + m * k of each view, laid out directly in polyphase order (p, k).
    dtype, dev = profiles.dtype, profiles.device
    fine_index = torch.arange(m, dtype=dtype, device=dev)[:, None] + m * torch.arange(phases, dtype=dtype, device=dev)
    positions = (step / m).to(dtype)[:, None] * (fine_index.reshape(1, -1) + first.to(dtype)[:, None])
    poly = _interpolate(profiles, positions)  # (S, V, m * phases)
    rel = fine - first[:, None]
    view_base = torch.arange(views, device=dev)[:, None] * (m * phases)
    lower = view_base + (rel % m) * phases + rel // m
    upper = view_base + ((rel + 1) % m) * phases + (rel + 1) // m
    start = torch.cat([lower, upper]).T  # (lines, 2V): every line's 2V source rows together
    start = start[None] + torch.arange(slices, device=dev)[:, None, None] * (views * m * phases)
    blend = torch.cat([1 - weight, weight]).T.contiguous()  # (lines, 2V), matching ``start``
    windows = poly.reshape(-1).unfold(0, length, 1)
    index = start.reshape(-1)
    if buffer is None:
        rows = windows.index_select(0, index)
    else:
        # Reusing one buffer avoids faulting in fresh pages for every chunk.
        rows = torch.index_select(windows, 0, index, out=buffer[: index.numel() * length].view(-1, length))
    blend = blend[None].expand(slices, -1, -1).reshape(slices * lines, 1, 2 * views)
    target.view(slices * lines, 1, length).baddbmm_(blend, rows.view(slices * lines, 2 * views, length))


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
    h = geometry.image.pixel_size_mm
    pitch = geometry.detector_pitch_mm
    centre = geometry.n_detectors // 2
    dev = filtered.device
    theta = torch.as_tensor(geometry.angles, dtype=torch.float64, device=dev)
    cos, sin = torch.cos(theta), torch.sin(theta)
    y = torch.as_tensor(geometry.image.y_mm(), device=dev)
    x = torch.as_tensor(geometry.image.x_mm(), device=dev)
    image = filtered.new_zeros(slices, rows, cols)
    transposed = filtered.new_zeros(slices, cols, rows)  # for the views summed along columns
    tracked = torch.is_grad_enabled() and filtered.requires_grad
    buffer = None if tracked else filtered.new_empty(2 * slices * _VIEWS_PER_CHUNK * rows * cols)
    along_rows = cos.abs() >= sin.abs()
    for row_mode in (True, False):
        views = torch.nonzero(along_rows == row_mode).flatten()
        for lo in range(0, views.numel(), _VIEWS_PER_CHUNK):
            v = views[lo : lo + _VIEWS_PER_CHUNK]
            c, s = cos[v], sin[v]
            if row_mode:  # u = (x_j cos + y_i sin) / pitch + centre, affine in j
                step = h * c / pitch
                offset = (x[0] * c[:, None] + y[None, :] * s[:, None]) / pitch + centre
                _shift_and_add(filtered[:, v], step, offset, image, buffer)
            else:  # affine in i: accumulate into the transposed image
                step = -h * s / pitch
                offset = (x[None, :] * c[:, None] + y[0] * s[:, None]) / pitch + centre
                _shift_and_add(filtered[:, v], step, offset, transposed, buffer)
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
    """Return the radius of the circle every view sees, mm."""
    if isinstance(geometry, FanBeamGeometry):
        return geometry.field_of_view_mm / 2
    return (geometry.n_detectors // 2 - 0.5) * geometry.detector_pitch_mm


def circle_mask(geometry: ParallelBeamGeometry | FanBeamGeometry, device: torch.device) -> torch.Tensor:
    """Return a boolean ``(rows, cols)`` mask of pixels inside the reconstruction circle."""
    radius = min(field_of_view_radius_mm(geometry), geometry.image.radius_mm)
    y = torch.as_tensor(geometry.image.y_mm(), device=device)
    x = torch.as_tensor(geometry.image.x_mm(), device=device)
    return (y[:, None] ** 2 + x[None, :] ** 2) <= radius**2
