"""The HDF5 sinogram format: round trips, plain-HDF5 readability, atomic writes, bad input."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raw_data import (
    FORMAT_NAME,
    CorruptFileError,
    DataShapeError,
    FanBeamGeometry,
    GeometryError,
    HeaderMismatchError,
    MissingFieldError,
    MissingFileError,
    NonFiniteDataError,
    ParallelBeamGeometry,
    ScannerProfile,
    Sinogram,
    SinogramFormatError,
    fan_beam,
    parallel_beam,
    read_sinogram,
    write_sinogram,
)


@pytest.fixture
def fan_sinogram(fan_geometry: FanBeamGeometry, small_profile: ScannerProfile) -> Sinogram:
    data = np.random.default_rng(0).random(fan_geometry.sinogram_shape, dtype=np.float32)
    return Sinogram(data, fan_geometry, small_profile, {"source": "unit test", "seed": "0"})


@pytest.fixture
def written(tmp_path: Path, fan_sinogram: Sinogram) -> Path:
    path = tmp_path / "scan.h5"
    write_sinogram(path, fan_sinogram)
    return path


def _edit(path: Path, change: Callable[[Any], None]) -> Path:
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def test_fan_sinogram_round_trips_with_geometry_profile_and_provenance(written: Path, fan_sinogram: Sinogram) -> None:
    back = read_sinogram(written)
    np.testing.assert_array_equal(back.data, fan_sinogram.data)
    assert back.geometry == fan_sinogram.geometry
    assert back.profile == fan_sinogram.profile
    assert back.provenance == fan_sinogram.provenance


@pytest.mark.parametrize("compress", [True, False])
def test_the_data_are_stored_gzip_compressed_unless_asked_not_to(tmp_path: Path, fan_sinogram: Sinogram,
                                                                  compress: bool) -> None:
    path = tmp_path / "scan.h5"
    write_sinogram(path, fan_sinogram, compress=compress)
    with h5py.File(path, "r") as f:
        assert f["sinogram"].compression == ("gzip" if compress else None)
    back = read_sinogram(path)
    np.testing.assert_array_equal(back.data, fan_sinogram.data)
    assert (back.geometry, back.profile, back.provenance) == (fan_sinogram.geometry, fan_sinogram.profile,
                                                              fan_sinogram.provenance)


def test_batched_parallel_sinogram_round_trips(tmp_path: Path, parallel_geometry: ParallelBeamGeometry) -> None:
    data = np.random.default_rng(1).random((3, *parallel_geometry.sinogram_shape))
    path = tmp_path / "batch.h5"
    write_sinogram(path, Sinogram(data.astype(np.float32), parallel_geometry))
    back = read_sinogram(path)
    assert back.data.shape == (3, 96, 91)
    np.testing.assert_allclose(back.data, data, rtol=1e-6)
    assert back.geometry == parallel_geometry
    assert back.profile is None


def test_file_is_self_describing_plain_hdf5(written: Path) -> None:
    with h5py.File(written, "r") as f:
        assert f.attrs["format"] == FORMAT_NAME
        assert f.attrs["format_version"] == "1.0"
        assert f["sinogram"].attrs["axes"] == "views,detectors"
        assert f["geometry"].attrs["type"] == "fan-equiangular"
        assert f["geometry/angles_rad"].attrs["units"] == "rad"
        assert f["geometry"].attrs["source_to_detector_mm"] == 900.0
        assert f["scanner"].attrs["name"] == "test-coarse"


def test_failed_write_leaves_no_partial_file(tmp_path: Path, fan_sinogram: Sinogram) -> None:
    path = tmp_path / "scan.h5"
    write_sinogram(path, fan_sinogram)
    before = path.read_bytes()
    # HDF5 cannot store a NUL inside a string attribute: the write fails half way through.
    broken = Sinogram(fan_sinogram.data * 2, fan_sinogram.geometry, None, {"note": "a\x00b"})
    with pytest.raises(ValueError, match="embedded NULLs"):
        write_sinogram(path, broken)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scan.h5"]


def test_writer_refuses_nan_and_writes_nothing(tmp_path: Path, fan_sinogram: Sinogram) -> None:
    path = tmp_path / "nan.h5"
    fan_sinogram.data[3, 4] = np.nan  # corrupted in memory after construction
    with pytest.raises(NonFiniteDataError, match=r"nan.h5: sinogram data holds 1 NaN"):
        write_sinogram(path, fan_sinogram)
    assert list(tmp_path.iterdir()) == []


def test_sinogram_refuses_nan_on_construction(fan_sinogram: Sinogram) -> None:
    bad = fan_sinogram.data.copy()
    bad[3, 4] = np.nan
    with pytest.raises(NonFiniteDataError, match=r"first at index \(3, 4\)"):
        Sinogram(bad, fan_sinogram.geometry)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"nope\.h5: no such file"):
        read_sinogram(tmp_path / "nope.h5")


def test_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "junk.h5"
    path.write_bytes(b"this is not HDF5" * 100)
    with pytest.raises(CorruptFileError, match=r"junk\.h5: cannot be read as HDF5"):
        read_sinogram(path)


def test_truncated_file(written: Path) -> None:
    data = written.read_bytes()
    written.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match="truncated or corrupt"):
        read_sinogram(written)


def test_other_hdf5_file_is_not_a_sinogram(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(SinogramFormatError, match="root attribute 'format' is None"):
        read_sinogram(path)


def test_future_major_version_is_refused(written: Path) -> None:
    _edit(written, lambda f: f.attrs.__setitem__("format_version", "2.0"))
    with pytest.raises(SinogramFormatError, match=r"format_version '2\.0' is not supported"):
        read_sinogram(written)


def test_missing_geometry_group(written: Path) -> None:
    _edit(written, lambda f: f.__delitem__("geometry"))
    with pytest.raises(MissingFieldError, match="group /geometry is missing"):
        read_sinogram(written)


@pytest.mark.parametrize("key", ["n_detectors", "pixel_size_mm", "source_to_isocenter_mm"])
def test_missing_geometry_attribute(written: Path, key: str) -> None:
    _edit(written, lambda f: f["geometry"].attrs.__delitem__(key))
    with pytest.raises(MissingFieldError, match=f"attribute '{key}' missing from /geometry"):
        read_sinogram(written)


def test_missing_data(written: Path) -> None:
    _edit(written, lambda f: f.__delitem__("sinogram"))
    with pytest.raises(MissingFieldError, match="dataset /sinogram is missing"):
        read_sinogram(written)


def test_header_disagreeing_with_angles(written: Path) -> None:
    _edit(written, lambda f: f["geometry"].attrs.__setitem__("n_views", 7))
    with pytest.raises(HeaderMismatchError, match="n_views is 7 but /geometry/angles_rad holds 180"):
        read_sinogram(written)


def test_header_disagreeing_with_data(written: Path) -> None:
    def replace(f: Any) -> None:
        del f["sinogram"]
        f["sinogram"] = np.zeros((180, 100), dtype=np.float32)

    _edit(written, replace)
    with pytest.raises(HeaderMismatchError, match=r"shape \(180, 100\) but /geometry describes"):
        read_sinogram(written)


def test_wrong_rank(written: Path) -> None:
    def replace(f: Any) -> None:
        del f["sinogram"]
        f["sinogram"] = np.zeros((1, 2, 180, 128), dtype=np.float32)

    _edit(written, replace)
    with pytest.raises(DataShapeError, match="has 4 dimensions, expected 2"):
        read_sinogram(written)


def test_wrong_type(written: Path) -> None:
    def replace(f: Any) -> None:
        del f["sinogram"]
        f["sinogram"] = np.zeros((180, 128), dtype=np.int16)

    _edit(written, replace)
    with pytest.raises(DataShapeError, match="dtype int16, expected float32"):
        read_sinogram(written)


def test_nan_in_stored_data(written: Path) -> None:
    _edit(written, lambda f: f["sinogram"].__setitem__((5, 6), np.inf))
    with pytest.raises(NonFiniteDataError, match=r"scan.h5: /sinogram holds 1 NaN"):
        read_sinogram(written)


def test_invalid_stored_geometry(written: Path) -> None:
    _edit(written, lambda f: f["geometry"].attrs.__setitem__("detector_pitch_mm", -2.0))
    with pytest.raises(GeometryError, match=r"scan\.h5: invalid /geometry: detector_pitch_mm is -2\.0"):
        read_sinogram(written)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    views=st.integers(2, 40),
    detectors=st.integers(1, 50),
    pitch=st.floats(0.1, 5.0),
    rows=st.integers(1, 40),
    cols=st.integers(1, 40),
    fan=st.booleans(),
    slices=st.sampled_from([0, 1, 3]),
)
def test_any_valid_geometry_round_trips(
    tmp_path: Path, views: int, detectors: int, pitch: float, rows: int, cols: int, fan: bool, slices: int
) -> None:
    if fan:
        geometry: Any = fan_beam(views, detectors, pitch, 1000.0, 1500.0, (rows, cols), 1.0)
    else:
        geometry = parallel_beam(views, detectors, pitch, (rows, cols), 1.0)
    shape = (slices, views, detectors) if slices else (views, detectors)
    data = np.random.default_rng(views).standard_normal(shape).astype(np.float32)
    path = tmp_path / f"any-{views}-{detectors}-{rows}-{cols}-{fan}-{slices}.h5"
    write_sinogram(path, Sinogram(data, geometry))
    back = read_sinogram(path)
    assert back.geometry == geometry
    np.testing.assert_array_equal(back.data, data)
