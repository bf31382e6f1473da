"""CT acquisition geometries: 2D parallel beam and 2D fan beam with an equiangular detector.

Conventions shared by every function of the package:

- Lengths are in millimetres, angles in radians.
- The image is a square-pixel grid of ``shape = (rows, cols)``. The rotation axis passes
  through the centre of pixel ``(rows // 2, cols // 2)``: pixel ``(i, j)`` has its centre at
  ``x = (j - cols // 2) * pixel_size_mm`` (right) and ``y = (rows // 2 - i) * pixel_size_mm``
  (up). The central detector element is ``n_detectors // 2``.
- A sinogram has axes ``(views, detectors)`` (``(slices, views, detectors)`` when batched).
- Parallel beam: view ``theta`` measures line integrals along the direction
  ``(-sin theta, cos theta)``; detector ``k`` sits at
  ``t = (k - n_detectors // 2) * detector_pitch_mm`` with ``t = x cos theta + y sin theta``.
  This is :func:`skimage.transform.radon`'s convention (its angles are in degrees and its
  sinogram is transposed, ``(detectors, views)``), so sinograms are interchangeable.
- Fan beam: at view ``beta`` the source sits at ``source_to_isocenter_mm * (sin beta, -cos beta)``;
  detector ``k`` is at fan angle ``gamma = (k - n_detectors // 2) * detector_pitch_mm /
  source_to_detector_mm`` (equiangular arc centred on the source) and measures the parallel ray
  ``theta = beta - gamma``, ``t = source_to_isocenter_mm * sin(gamma)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from raw_data.errors import GeometryError

__all__ = [
    "FanBeamGeometry",
    "Geometry",
    "ImageGrid",
    "ParallelBeamGeometry",
    "fan_beam",
    "parallel_beam",
]


def _positive(name: str, value: float, unit: str) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise GeometryError(f"{name} is {value!r}, expected a finite number > 0 {unit}")


def _count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise GeometryError(f"{name} is {value!r}, expected an integer >= 1")


@dataclass(frozen=True)
class ImageGrid:
    """The reconstruction (and phantom) pixel grid.

    Attributes:
        shape: ``(rows, cols)`` in pixels.
        pixel_size_mm: side of a square pixel, mm.
    """

    shape: tuple[int, int]
    pixel_size_mm: float

    def __post_init__(self) -> None:
        if not (isinstance(self.shape, tuple) and len(self.shape) == 2):
            raise GeometryError(f"image shape is {self.shape!r}, expected a tuple (rows, cols)")
        _count("image rows", self.shape[0])
        _count("image cols", self.shape[1])
        object.__setattr__(self, "shape", (int(self.shape[0]), int(self.shape[1])))
        _positive("pixel_size_mm", self.pixel_size_mm, "mm")

    @property
    def radius_mm(self) -> float:
        """Radius of the largest centred circle of pixel centres inside the grid, mm."""
        return (min(self.shape) // 2) * self.pixel_size_mm

    @property
    def half_diagonal_mm(self) -> float:
        """Distance from the rotation axis to the farthest pixel corner, mm."""
        rows, cols = self.shape
        return math.hypot(rows // 2 + 0.5, cols // 2 + 0.5) * self.pixel_size_mm

    def x_mm(self) -> npt.NDArray[np.float64]:
        """Return the x coordinate of each column's pixel centres, mm, shape ``(cols,)``."""
        cols = self.shape[1]
        return (np.arange(cols, dtype=np.float64) - cols // 2) * self.pixel_size_mm

    def y_mm(self) -> npt.NDArray[np.float64]:
        """Return the y coordinate of each row's pixel centres, mm, shape ``(rows,)``."""
        rows = self.shape[0]
        return (rows // 2 - np.arange(rows, dtype=np.float64)) * self.pixel_size_mm


def _check_angles(angles: tuple[float, ...]) -> tuple[float, ...]:
    values = tuple(float(a) for a in angles)
    if not values:
        raise GeometryError("angles_rad is empty, expected at least one view angle in radians")
    if not all(math.isfinite(a) for a in values):
        raise GeometryError("angles_rad holds NaN or infinite values; pass finite radians")
    return values


@dataclass(frozen=True)
class ParallelBeamGeometry:
    """2D parallel-beam geometry, validated on construction.

    Attributes:
        angles_rad: view angles, radians, one per sinogram row.
        n_detectors: detector elements per view.
        detector_pitch_mm: detector element spacing, mm.
        image: the image grid the projector and FBP work on.
    """

    angles_rad: tuple[float, ...]
    n_detectors: int
    detector_pitch_mm: float
    image: ImageGrid
    kind: str = field(default="parallel", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "angles_rad", _check_angles(self.angles_rad))
        _count("n_detectors", self.n_detectors)
        _positive("detector_pitch_mm", self.detector_pitch_mm, "mm")
        if not isinstance(self.image, ImageGrid):
            raise GeometryError(f"image is {type(self.image).__name__}, expected an ImageGrid")

    @property
    def n_views(self) -> int:
        """Number of views (sinogram rows)."""
        return len(self.angles_rad)

    @property
    def angles(self) -> npt.NDArray[np.float64]:
        """View angles as an array, radians, shape ``(views,)``."""
        return np.asarray(self.angles_rad, dtype=np.float64)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(views, detectors)``."""
        return (self.n_views, self.n_detectors)

    def detector_positions_mm(self) -> npt.NDArray[np.float64]:
        """Return each detector's signed distance ``t`` from the rotation axis, mm."""
        k = np.arange(self.n_detectors, dtype=np.float64)
        return (k - self.n_detectors // 2) * self.detector_pitch_mm


@dataclass(frozen=True)
class FanBeamGeometry:
    """2D fan-beam geometry with an equiangular (arc) detector, validated on construction.

    Attributes:
        angles_rad: source angles ``beta``, radians, one per sinogram row.
        n_detectors: detector elements per view.
        detector_pitch_mm: element spacing along the detector arc, mm.
        source_to_isocenter_mm: distance source to rotation axis, mm.
        source_to_detector_mm: distance source to detector arc, mm.
        image: the image grid the projector and FBP work on.
    """

    angles_rad: tuple[float, ...]
    n_detectors: int
    detector_pitch_mm: float
    source_to_isocenter_mm: float
    source_to_detector_mm: float
    image: ImageGrid
    kind: str = field(default="fan", init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "angles_rad", _check_angles(self.angles_rad))
        _count("n_detectors", self.n_detectors)
        _positive("detector_pitch_mm", self.detector_pitch_mm, "mm")
        _positive("source_to_isocenter_mm", self.source_to_isocenter_mm, "mm")
        _positive("source_to_detector_mm", self.source_to_detector_mm, "mm")
        if self.source_to_detector_mm <= self.source_to_isocenter_mm:
            raise GeometryError(
                f"source_to_detector_mm {self.source_to_detector_mm} <= source_to_isocenter_mm "
                f"{self.source_to_isocenter_mm}; the detector must lie beyond the rotation axis"
            )
        if not isinstance(self.image, ImageGrid):
            raise GeometryError(f"image is {type(self.image).__name__}, expected an ImageGrid")
        if self.image.half_diagonal_mm >= self.source_to_isocenter_mm:
            raise GeometryError(
                f"image grid reaches {self.image.half_diagonal_mm:.1f} mm from the axis but the "
                f"source circles at {self.source_to_isocenter_mm} mm; use a smaller grid"
            )
        if self.fan_angle_rad >= math.pi:
            raise GeometryError(f"fan angle {self.fan_angle_rad:.3f} rad >= pi; reduce n_detectors or pitch")

    @property
    def n_views(self) -> int:
        """Number of views (sinogram rows)."""
        return len(self.angles_rad)

    @property
    def angles(self) -> npt.NDArray[np.float64]:
        """Source angles as an array, radians, shape ``(views,)``."""
        return np.asarray(self.angles_rad, dtype=np.float64)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        """``(views, detectors)``."""
        return (self.n_views, self.n_detectors)

    @property
    def angular_pitch_rad(self) -> float:
        """Fan angle between neighbouring detector elements, radians."""
        return self.detector_pitch_mm / self.source_to_detector_mm

    @property
    def fan_angle_rad(self) -> float:
        """Full fan angle covered by the detector, radians."""
        return self.n_detectors * self.angular_pitch_rad

    @property
    def field_of_view_mm(self) -> float:
        """Diameter of the circle seen by every view, mm."""
        return 2 * self.source_to_isocenter_mm * math.sin(self.fan_angle_rad / 2)

    def fan_angles(self) -> npt.NDArray[np.float64]:
        """Return each detector's fan angle ``gamma``, radians, shape ``(detectors,)``."""
        k = np.arange(self.n_detectors, dtype=np.float64)
        return (k - self.n_detectors // 2) * self.angular_pitch_rad


Geometry = ParallelBeamGeometry | FanBeamGeometry


def _grid(image_shape: tuple[int, int], pixel_size_mm: float) -> ImageGrid:
    if len(image_shape) != 2:
        raise GeometryError(f"image_shape is {image_shape!r}, expected (rows, cols)")
    return ImageGrid((image_shape[0], image_shape[1]), pixel_size_mm)


def _uniform_angles(n_views: int, span_rad: float, start_rad: float) -> tuple[float, ...]:
    _count("n_views", n_views)
    _positive("span_rad", span_rad, "rad")
    return tuple(float(a) for a in start_rad + np.arange(n_views) * (span_rad / n_views))


def parallel_beam(
    n_views: int,
    n_detectors: int,
    detector_pitch_mm: float,
    image_shape: tuple[int, int],
    pixel_size_mm: float,
    *,
    span_rad: float = math.pi,
    start_rad: float = 0.0,
) -> ParallelBeamGeometry:
    """Build a parallel-beam geometry with equally spaced views.

    Parameters:
        n_views: number of views over ``span_rad`` (end point excluded).
        n_detectors: detector elements per view.
        detector_pitch_mm: detector spacing, mm.
        image_shape: image grid ``(rows, cols)``.
        pixel_size_mm: pixel side, mm.
        span_rad: angular range, radians (pi for a complete parallel scan).
        start_rad: first view angle, radians.

    Returns:
        The validated geometry.

    Raises:
        GeometryError: a count is not a positive integer or a length is not positive.
    """
    return ParallelBeamGeometry(
        angles_rad=_uniform_angles(n_views, span_rad, start_rad),
        n_detectors=n_detectors,
        detector_pitch_mm=detector_pitch_mm,
        image=_grid(image_shape, pixel_size_mm),
    )


def fan_beam(
    n_views: int,
    n_detectors: int,
    detector_pitch_mm: float,
    source_to_isocenter_mm: float,
    source_to_detector_mm: float,
    image_shape: tuple[int, int],
    pixel_size_mm: float,
    *,
    span_rad: float = 2 * math.pi,
    start_rad: float = 0.0,
) -> FanBeamGeometry:
    """Build a fan-beam (equiangular detector) geometry with equally spaced source angles.

    Parameters:
        n_views: number of views over ``span_rad`` (end point excluded).
        n_detectors: detector elements per view.
        detector_pitch_mm: element spacing along the detector arc, mm.
        source_to_isocenter_mm: source to rotation axis, mm.
        source_to_detector_mm: source to detector, mm.
        image_shape: image grid ``(rows, cols)``.
        pixel_size_mm: pixel side, mm.
        span_rad: angular range, radians (2 pi for a full rotation, which FBP needs).
        start_rad: first source angle, radians.

    Returns:
        The validated geometry.

    Raises:
        GeometryError: inconsistent distances, non-positive sizes, or a grid the fan cannot hold.
    """
    return FanBeamGeometry(
        angles_rad=_uniform_angles(n_views, span_rad, start_rad),
        n_detectors=n_detectors,
        detector_pitch_mm=detector_pitch_mm,
        source_to_isocenter_mm=source_to_isocenter_mm,
        source_to_detector_mm=source_to_detector_mm,
        image=_grid(image_shape, pixel_size_mm),
    )
