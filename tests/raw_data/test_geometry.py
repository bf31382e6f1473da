"""Geometry objects: conventions and validation on construction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raw_data import FanBeamGeometry, GeometryError, ImageGrid, fan_beam, parallel_beam


def test_parallel_views_are_equally_spaced_over_180_degrees() -> None:
    g = parallel_beam(4, 5, 1.0, (8, 8), 1.0)
    np.testing.assert_allclose(g.angles, [0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
    assert g.sinogram_shape == (4, 5)


def test_central_detector_sits_on_the_rotation_axis() -> None:
    assert parallel_beam(2, 5, 2.0, (8, 8), 1.0).detector_positions_mm()[2] == 0.0
    assert parallel_beam(2, 6, 2.0, (8, 8), 1.0).detector_positions_mm()[3] == 0.0


def test_pixel_centres_put_the_axis_on_pixel_rows_over_2_cols_over_2() -> None:
    grid = ImageGrid((4, 6), 0.5)
    np.testing.assert_allclose(grid.x_mm(), [-1.5, -1.0, -0.5, 0.0, 0.5, 1.0])
    np.testing.assert_allclose(grid.y_mm(), [1.0, 0.5, 0.0, -0.5])


def test_fan_angles_follow_pitch_over_source_to_detector_distance() -> None:
    g = fan_beam(8, 3, 2.0, 100.0, 200.0, (8, 8), 1.0)
    np.testing.assert_allclose(g.fan_angles(), [-0.01, 0.0, 0.01])
    assert g.angular_pitch_rad == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"detector_pitch_mm": -1.0}, "detector_pitch_mm is -1.0"),
        ({"detector_pitch_mm": float("nan")}, "detector_pitch_mm is nan"),
        ({"n_detectors": 0}, "n_detectors is 0"),
        ({"source_to_detector_mm": 400.0}, "detector must lie beyond the rotation axis"),
        ({"image_shape": (800, 800)}, "use a smaller grid"),
        ({"pixel_size_mm": 0.0}, "pixel_size_mm is 0.0"),
        ({"image_shape": (8,)}, "expected \\(rows, cols\\)"),
    ],
)
def test_fan_geometry_rejects_invalid_values(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "n_views": 10,
        "n_detectors": 16,
        "detector_pitch_mm": 1.0,
        "source_to_isocenter_mm": 500.0,
        "source_to_detector_mm": 900.0,
        "image_shape": (32, 32),
        "pixel_size_mm": 1.0,
    }
    args.update(kwargs)
    with pytest.raises(GeometryError, match=message):
        fan_beam(**args)  # type: ignore[arg-type]


def test_geometry_rejects_non_finite_angles() -> None:
    with pytest.raises(GeometryError, match="NaN or infinite"):
        FanBeamGeometry(
            angles_rad=(0.0, float("inf")),
            n_detectors=4,
            detector_pitch_mm=1.0,
            source_to_isocenter_mm=100.0,
            source_to_detector_mm=200.0,
            image=ImageGrid((8, 8), 1.0),
        )


def test_geometry_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="n_views is 0"):
        parallel_beam(0, 4, 1.0, (8, 8), 1.0)
