"""Shape checks shared by the torch operators: accept one slice or a batch of slices."""

from __future__ import annotations

import torch

from raw_data.errors import DataShapeError, NonFiniteDataError


def as_batch(data: torch.Tensor, expected: tuple[int, int], what: str, axes: str) -> tuple[torch.Tensor, bool]:
    """Return ``data`` as ``(slices, *expected)`` and whether it came without a slice axis.

    Parameters:
        data: a floating tensor of shape ``expected`` or ``(slices, *expected)``.
        expected: the trailing two dimensions required.
        what: the name used in messages ("image", "sinogram").
        axes: the axis names used in messages ("(rows, cols)").

    Raises:
        DataShapeError: not a tensor, not floating point, or the wrong rank or shape.
    """
    if not isinstance(data, torch.Tensor):
        raise DataShapeError(f"{what} is a {type(data).__name__}, expected a torch.Tensor")
    if not data.is_floating_point():
        raise DataShapeError(f"{what} has dtype {data.dtype}, expected a floating dtype")
    if data.dim() not in (2, 3):
        raise DataShapeError(f"{what} has {data.dim()} dimensions, expected 2 {axes} or 3 (slices, ...)")
    if tuple(data.shape[-2:]) != tuple(expected):
        raise DataShapeError(
            f"{what} has shape {tuple(data.shape)}, expected {axes} = {tuple(expected)} "
            "(optionally with a leading slice axis); check the geometry"
        )
    single = data.dim() == 2
    return (data.unsqueeze(0) if single else data), single


def check_finite_tensor(data: torch.Tensor, what: str, fix: str) -> None:
    """Raise :class:`NonFiniteDataError` if ``data`` holds NaN or inf, naming how many and where.

    Checked at the public entry points because NaN spreads: one NaN in a sinogram turns
    every pixel of its filtered back-projection into NaN.
    """
    bad = ~torch.isfinite(data.detach())
    if bool(bad.any()):
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        verb = "hold" if what.endswith("s") else "holds"
        raise NonFiniteDataError(
            f"{what} {verb} {int(bad.sum())} NaN or infinite values (first at index {first}); {fix}"
        )
