"""Filtered back-projection: which view sets it accepts, what its refusals say, its defaults, the
reconstruction circle, and the dtype and shape of what it returns."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raw_data import (
    DataShapeError,
    GeometryError,
    NonFiniteDataError,
    ParallelBeamGeometry,
    fan_beam,
    fbp,
    parallel_beam,
)
from raw_data.geometry import FanBeamGeometry, ImageGrid

UNEQUAL = (
    "FBP needs equally spaced, increasing view angles; resample the views or use an iterative "
    "reconstruction with forward_project/back_project"
)


def _parallel(angles: np.ndarray, detectors: int = 21, pitch: float = 1.0) -> ParallelBeamGeometry:
    return ParallelBeamGeometry(tuple(float(a) for a in angles), detectors, pitch, ImageGrid((16, 16), 1.0))


def _sinogram(geometry: ParallelBeamGeometry | FanBeamGeometry, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(*geometry.sinogram_shape, generator=gen, dtype=torch.float64)


def _step_angles(views: int, span: float) -> np.ndarray:
    return np.arange(views) * (span / views)


def test_one_view_is_refused() -> None:
    geometry = _parallel(np.array([0.3]))
    with pytest.raises(GeometryError, match=r"^FBP needs at least 2 views, got 1$"):
        fbp(_sinogram(geometry), geometry)


def test_two_views_over_half_a_turn_are_enough() -> None:
    geometry = _parallel(_step_angles(2, math.pi))
    assert fbp(_sinogram(geometry), geometry).shape == (16, 16)


@pytest.mark.parametrize(
    "angles",
    [
        _step_angles(30, math.pi)[::-1],  # decreasing
        np.full(30, 0.4),  # all the same angle
        np.where(np.arange(30) == 11, _step_angles(30, math.pi) + 0.3 * math.pi / 30, _step_angles(30, math.pi)),
    ],
    ids=["decreasing", "repeated", "one-view-off"],
)
def test_views_not_equally_spaced_and_increasing_are_refused(angles: np.ndarray) -> None:
    geometry = _parallel(angles)
    with pytest.raises(GeometryError, match=f"^{UNEQUAL}$"):
        fbp(_sinogram(geometry), geometry)


@pytest.mark.parametrize(("shift", "accepted"), [(0.5e-3, True), (-0.9e-3, True), (2e-3, False), (-1.5e-3, False)])
def test_a_view_may_be_off_its_place_by_a_thousandth_of_a_step(shift: float, accepted: bool) -> None:
    views = 30
    step = math.pi / views
    angles = _step_angles(views, math.pi)
    angles[13] += shift * step
    geometry = _parallel(angles)
    if accepted:
        assert fbp(_sinogram(geometry), geometry).shape == (16, 16)
    else:
        with pytest.raises(GeometryError, match=f"^{UNEQUAL}$"):
            fbp(_sinogram(geometry), geometry)


@pytest.mark.parametrize("start", [0.0, 0.3, -2.0])
@pytest.mark.parametrize("turns", [1, 2, 3])
def test_parallel_views_over_whole_half_turns_are_accepted(turns: int, start: float) -> None:
    geometry = _parallel(start + _step_angles(30 * turns, turns * math.pi))
    assert fbp(_sinogram(geometry), geometry).shape == (16, 16)


@pytest.mark.parametrize(("degrees", "views"), [(270, 45), (90, 30), (170, 34)])
def test_parallel_views_over_part_of_a_half_turn_are_refused(degrees: int, views: int) -> None:
    geometry = _parallel(_step_angles(views, math.radians(degrees)))
    message = (f"^views cover {degrees}.0 degrees; this FBP needs 180 degrees or a whole multiple "
               r"\(short-scan weighting is not implemented\)$")
    with pytest.raises(GeometryError, match=message):
        fbp(_sinogram(geometry), geometry)


def _fan(views: int, span: float) -> FanBeamGeometry:
    return fan_beam(views, 41, 1.0, 100.0, 200.0, (16, 16), 1.0, span_rad=span)


def test_fan_views_over_half_a_turn_are_refused() -> None:
    geometry = _fan(36, math.pi)
    message = (r"^views cover 180.0 degrees; this FBP needs 360 degrees \(full rotation\) or a whole multiple "
               r"\(short-scan weighting is not implemented\)$")
    with pytest.raises(GeometryError, match=message):
        fbp(_sinogram(geometry), geometry)


def test_fan_views_over_two_turns_give_the_image_of_one() -> None:
    # Each source position twice, each sinogram row twice: the same image as one turn.
    one = _fan(24, 2 * math.pi)
    two = _fan(48, 4 * math.pi)
    sinogram = _sinogram(one)
    torch.testing.assert_close(fbp(torch.cat([sinogram, sinogram]), two), fbp(sinogram, one))


def test_parallel_views_over_a_full_turn_give_the_image_of_half_a_turn() -> None:
    # Over 360 degrees the second half turn sees every line again, mirrored on the detector.
    half = _parallel(_step_angles(30, math.pi))
    full = _parallel(_step_angles(60, 2 * math.pi))
    sinogram = _sinogram(half)
    mirrored = torch.flip(sinogram, dims=[1])  # odd detector count: flipping keeps the centre
    got, expected = fbp(torch.cat([sinogram, mirrored]), full), fbp(sinogram, half)
    # Not exact: the back-projector rounds the kinks of this rough profile differently when mirrored.
    assert torch.linalg.norm(got - expected) <= 0.01 * torch.linalg.norm(expected)


def test_the_default_filter_is_the_ramp() -> None:
    geometry = parallel_beam(30, 21, 1.0, (16, 16), 1.0)
    sinogram = _sinogram(geometry)
    torch.testing.assert_close(fbp(sinogram, geometry), fbp(sinogram, geometry, "ramp"), rtol=0, atol=0)
    assert not torch.equal(fbp(sinogram, geometry), fbp(sinogram, geometry, "hann"))


def _distance_mm(geometry: ParallelBeamGeometry | FanBeamGeometry) -> np.ndarray:
    y, x = np.meshgrid(geometry.image.y_mm(), geometry.image.x_mm(), indexing="ij")
    return np.hypot(x, y)


@pytest.mark.parametrize(
    ("geometry", "radius"),
    [
        # the detector is narrower than the grid: (21 // 2 - 0.5) pitches of 0.8 mm
        (parallel_beam(40, 21, 0.8, (40, 40), 0.5), 9.5 * 0.8),
        # the grid's inscribed circle of pixel centres is the smaller: 8 pixels of 1 mm
        (parallel_beam(40, 41, 1.0, (16, 18), 1.0), 8.0),
    ],
    ids=["detector", "grid"],
)
def test_pixels_outside_the_reconstruction_circle_are_zero(geometry: ParallelBeamGeometry, radius: float) -> None:
    sinogram = _sinogram(geometry, seed=2)
    masked = fbp(sinogram, geometry).numpy()
    plain = fbp(sinogram, geometry, circle=False).numpy()
    inside = _distance_mm(geometry) <= radius + 1e-9
    assert np.array_equal(masked[inside], plain[inside])
    assert np.all(masked[~inside] == 0.0)
    assert np.all(plain[~inside] != 0.0)  # the mask, not the data, made them zero


def test_fan_pixels_outside_the_field_of_view_are_zero() -> None:
    geometry = fan_beam(36, 17, 1.0, 100.0, 200.0, (24, 24), 1.0)
    sinogram = _sinogram(geometry, seed=3)
    masked = fbp(sinogram, geometry).numpy()
    plain = fbp(sinogram, geometry, circle=False).numpy()
    inside = _distance_mm(geometry) <= geometry.field_of_view_mm / 2
    assert 0 < inside.sum() < inside.size
    assert np.array_equal(masked[inside], plain[inside])
    assert np.all(masked[~inside] == 0.0)


@pytest.mark.parametrize("kind", ["parallel", "fan"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fbp_returns_the_sinogram_dtype_and_its_slices(kind: str, dtype: torch.dtype) -> None:
    geometry = parallel_beam(30, 21, 1.0, (16, 12), 1.0) if kind == "parallel" else _fan(24, 2 * math.pi)
    single = _sinogram(geometry, seed=4).to(dtype)
    image = fbp(single, geometry)
    assert (image.dtype, tuple(image.shape)) == (dtype, geometry.image.shape)
    batch = fbp(single[None], geometry)
    assert (batch.dtype, tuple(batch.shape)) == (dtype, (1, *geometry.image.shape))
    torch.testing.assert_close(batch[0], image)


def test_a_sinogram_with_nan_is_refused_naming_where() -> None:
    geometry = parallel_beam(30, 21, 1.0, (16, 16), 1.0)
    sinogram = _sinogram(geometry)
    sinogram[2, 5] = math.nan
    message = (r"^sinogram holds 1 NaN or infinite values \(first at index \(2, 5\)\); "
               "fix or drop the corrupt views before reconstruction$")
    with pytest.raises(NonFiniteDataError, match=message):
        fbp(sinogram, geometry)


def test_a_sinogram_of_the_wrong_shape_is_refused_naming_the_axes() -> None:
    geometry = parallel_beam(30, 21, 1.0, (16, 16), 1.0)
    message = (r"^sinogram has shape \(30, 20\), expected \(views, detectors\) = \(30, 21\) "
               r"\(optionally with a leading slice axis\); check the geometry$")
    with pytest.raises(DataShapeError, match=message):
        fbp(torch.zeros(30, 20), geometry)
    with pytest.raises(DataShapeError, match=r"^sinogram has 4 dimensions, expected 2 \(views, detectors\) or 3"):
        fbp(torch.zeros(1, 1, 30, 21), geometry)
