"""The in-memory CT sinogram: data, the geometry it was measured with, and where it came from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from raw_data.errors import DataShapeError, NonFiniteDataError
from raw_data.geometry import Geometry
from raw_data.scanners import ScannerProfile

if TYPE_CHECKING:
    import torch

__all__ = ["Sinogram", "check_finite"]


def check_finite(
    data: npt.NDArray[np.inexact],
    what: str,
    path: str | None = None,
    *,
    fix: str = "fix or drop the corrupt views before use",
) -> None:
    """Raise :class:`NonFiniteDataError` naming how many values of ``data`` are NaN or inf.

    Parameters:
        data: the array to check.
        what: its name in the message ("sinogram data", "coil images").
        path: the file it came from, if any.
        fix: how to fix it, the end of the message.
    """
    bad = ~np.isfinite(data)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        verb = "hold" if what.endswith("s") else "holds"
        raise NonFiniteDataError(
            f"{what} {verb} {int(bad.sum())} NaN or infinite values (first at index {first}); {fix}",
            path,
        )


@dataclass(frozen=True, eq=False)
class Sinogram:
    """A CT sinogram with its full description.

    Attributes:
        data: line integrals ``-ln(I / I0)`` (dimensionless), float32, shape
            ``(views, detectors)`` or ``(slices, views, detectors)``.
        geometry: the acquisition geometry (mm, radians) and reconstruction grid.
        profile: the scanner profile it was acquired with, if any.
        provenance: free-form strings: source, seed, dose, creating software.
    """

    data: npt.NDArray[np.float32]
    geometry: Geometry
    profile: ScannerProfile | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if not np.issubdtype(data.dtype, np.floating):
            raise DataShapeError(f"sinogram data has dtype {data.dtype}, expected floating point")
        if data.ndim not in (2, 3):
            raise DataShapeError(
                f"sinogram data has {data.ndim} dimensions, expected 2 (views, detectors) "
                "or 3 (slices, views, detectors)"
            )
        if data.shape[-2:] != self.geometry.sinogram_shape:
            raise DataShapeError(
                f"sinogram data has shape {data.shape}, but the geometry describes "
                f"(views, detectors) = {self.geometry.sinogram_shape}"
            )
        check_finite(data, "sinogram data")
        object.__setattr__(self, "data", np.ascontiguousarray(data, dtype=np.float32))
        object.__setattr__(self, "provenance", {str(k): str(v) for k, v in self.provenance.items()})

    def tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Return the data as a float32 torch tensor on ``device``."""
        import torch  # only here: reading and writing sinograms does not need torch

        return torch.from_numpy(self.data).to(device)
