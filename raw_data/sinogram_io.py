"""Read and write CT sinograms in the MeTAI HDF5 layout (``docs/formats/ct-sinogram.md``).

The layout is plain HDF5 (datasets, groups, scalar attributes with units in their names),
so ``h5dump``, HDFView, MATLAB or h5py read it without this library. Writes are atomic;
reads validate everything and raise an error naming the problem and the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from raw_data._files import atomic_target, created_by, existing_file, utc_now
from raw_data.errors import (
    CorruptFileError,
    DataShapeError,
    GeometryError,
    HeaderMismatchError,
    MissingFieldError,
    SinogramFormatError,
)
from raw_data.geometry import FanBeamGeometry, Geometry, ImageGrid, ParallelBeamGeometry
from raw_data.scanners import ScannerProfile
from raw_data.sinogram import Sinogram, check_finite

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "read_sinogram", "write_sinogram"]

FORMAT_NAME = "metai-ct-sinogram"
FORMAT_VERSION = "1.0"
_AXES = {2: "views,detectors", 3: "slices,views,detectors"}
_PARALLEL, _FAN = "parallel", "fan-equiangular"
_GRID_KEYS = ("image_rows", "image_cols", "pixel_size_mm")
_FAN_KEYS = ("source_to_isocenter_mm", "source_to_detector_mm")
_PROFILE_KEYS = tuple(ScannerProfile.__dataclass_fields__)


def write_sinogram(path: str | os.PathLike[str], sinogram: Sinogram) -> None:
    """Write a sinogram, its geometry, scanner profile and provenance to an HDF5 file.

    The file appears complete or not at all: the data go to a temporary file in the same
    directory, which then replaces ``path``.

    Parameters:
        path: destination ``.h5`` file; an existing file is replaced.
        sinogram: the sinogram (line integrals, ``(views, detectors)`` or
            ``(slices, views, detectors)``).

    Raises:
        NonFiniteDataError: the data hold NaN or inf (nothing is written).
        OSError: the directory is not writable or the disk is full (nothing is left behind).
    """
    check_finite(sinogram.data, "sinogram data", str(path))
    g = sinogram.geometry
    with atomic_target(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs.update(
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "created_by": created_by(),
                "created_at": utc_now(),
            }
        )
        data = f.create_dataset("sinogram", data=sinogram.data.astype(np.float32), compression="gzip")
        data.attrs.update({"axes": _AXES[sinogram.data.ndim], "quantity": "line_integral", "units": "1"})
        geo = f.create_group("geometry")
        geo.attrs.update(
            {
                "type": _FAN if isinstance(g, FanBeamGeometry) else _PARALLEL,
                "n_views": g.n_views,
                "n_detectors": g.n_detectors,
                "detector_pitch_mm": g.detector_pitch_mm,
                "image_rows": g.image.shape[0],
                "image_cols": g.image.shape[1],
                "pixel_size_mm": g.image.pixel_size_mm,
            }
        )
        if isinstance(g, FanBeamGeometry):
            geo.attrs.update(
                {
                    "source_to_isocenter_mm": g.source_to_isocenter_mm,
                    "source_to_detector_mm": g.source_to_detector_mm,
                }
            )
        geo.create_dataset("angles_rad", data=g.angles).attrs["units"] = "rad"
        if sinogram.profile is not None:
            f.create_group("scanner").attrs.update(sinogram.profile.to_dict())
        f.create_group("provenance").attrs.update(dict(sinogram.provenance))


def _attr(group: Any, key: str, path: str) -> Any:
    if key not in group.attrs:
        raise MissingFieldError(
            f"attribute {key!r} missing from {group.name}; the file is not a complete "
            f"{FORMAT_NAME} (see docs/formats/ct-sinogram.md)",
            path,
        )
    value = group.attrs[key]
    return value.decode() if isinstance(value, bytes) else value


def _number(group: Any, key: str, path: str, kind: type) -> Any:
    value = _attr(group, key, path)
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise HeaderMismatchError(
            f"{group.name} attribute {key!r} is {value!r}, expected a {kind.__name__}", path
        ) from None


def _check_header(f: Any, path: str) -> None:
    fmt = f.attrs.get("format")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != FORMAT_NAME:
        raise SinogramFormatError(
            f"root attribute 'format' is {fmt!r}, expected {FORMAT_NAME!r}; this is not a "
            "MeTAI CT sinogram (for ISMRMRD k-space use read_ismrmrd)",
            path,
        )
    version = str(_attr(f, "format_version", path))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise SinogramFormatError(
            f"format_version {version!r} is not supported (this reader reads "
            f"{FORMAT_VERSION.split('.')[0]}.x); upgrade metai-exchange",
            path,
        )


def _read_geometry(f: Any, path: str) -> Geometry:
    if "geometry" not in f or not isinstance(f["geometry"], h5py.Group):
        raise MissingFieldError("group /geometry is missing; the geometry is required", path)
    geo = f["geometry"]
    kind = _attr(geo, "type", path)
    if "angles_rad" not in geo:
        raise MissingFieldError("dataset /geometry/angles_rad is missing", path)
    angles = np.asarray(geo["angles_rad"][()], dtype=np.float64)
    if angles.ndim != 1:
        raise DataShapeError(f"/geometry/angles_rad has shape {angles.shape}, expected (views,)", path)
    check_finite(angles, "/geometry/angles_rad", path)
    n_views = _number(geo, "n_views", path, int)
    if n_views != angles.size:
        raise HeaderMismatchError(
            f"/geometry n_views is {n_views} but /geometry/angles_rad holds {angles.size} angles",
            path,
        )
    rows, cols, pixel = (_number(geo, k, path, t) for k, t in zip(_GRID_KEYS, (int, int, float), strict=True))
    common: dict[str, Any] = {
        "angles_rad": tuple(angles.tolist()),
        "n_detectors": _number(geo, "n_detectors", path, int),
        "detector_pitch_mm": _number(geo, "detector_pitch_mm", path, float),
    }
    try:
        image = ImageGrid((rows, cols), pixel)
        if kind == _PARALLEL:
            return ParallelBeamGeometry(image=image, **common)
        if kind == _FAN:
            sid, sdd = (_number(geo, k, path, float) for k in _FAN_KEYS)
            return FanBeamGeometry(image=image, source_to_isocenter_mm=sid, source_to_detector_mm=sdd, **common)
    except GeometryError as exc:
        raise GeometryError(f"invalid /geometry: {exc}", path) from exc
    raise SinogramFormatError(f"/geometry type is {kind!r}, expected {_PARALLEL!r} or {_FAN!r}", path)


def _read_profile(f: Any, path: str) -> ScannerProfile | None:
    if "scanner" not in f:
        return None
    group = f["scanner"]
    kinds = {"name": str, "description": str, "n_detectors": int, "n_views": int}
    values = {k: _number(group, k, path, kinds.get(k, float)) for k in _PROFILE_KEYS}
    try:
        return ScannerProfile(**values)
    except GeometryError as exc:
        raise GeometryError(f"invalid /scanner: {exc}", path) from exc


def _read_data(f: Any, path: str, geometry: Geometry) -> np.ndarray:
    if "sinogram" not in f or not isinstance(f["sinogram"], h5py.Dataset):
        raise MissingFieldError("dataset /sinogram is missing", path)
    dset = f["sinogram"]
    if dset.dtype.kind != "f":
        raise DataShapeError(f"/sinogram has dtype {dset.dtype}, expected float32", path)
    if dset.ndim not in (2, 3):
        raise DataShapeError(
            f"/sinogram has {dset.ndim} dimensions, expected 2 (views, detectors) or 3 (slices, views, detectors)",
            path,
        )
    if dset.shape[-2:] != geometry.sinogram_shape:
        raise HeaderMismatchError(
            f"/sinogram has shape {dset.shape} but /geometry describes (views, detectors) = {geometry.sinogram_shape}",
            path,
        )
    data = np.asarray(dset[()], dtype=np.float32)
    check_finite(data, "/sinogram", path)
    return data


def _provenance(f: Any) -> Mapping[str, str]:
    if "provenance" not in f:
        return {}
    return {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f["provenance"].attrs.items()}


def read_sinogram(path: str | os.PathLike[str]) -> Sinogram:
    """Read and validate a sinogram file written by :func:`write_sinogram` (format 1.x).

    Parameters:
        path: the ``.h5`` file.

    Returns:
        The sinogram: data ``(views, detectors)`` or ``(slices, views, detectors)`` float32,
        geometry (mm, radians), scanner profile (or None) and provenance.

    Raises:
        MissingFileError: no such file.
        CorruptFileError: not HDF5, truncated or unreadable.
        SinogramFormatError: not a MeTAI sinogram, or an unsupported major version.
        MissingFieldError: a required group, dataset or attribute is absent.
        DataShapeError: the data have the wrong rank or type.
        HeaderMismatchError: the geometry disagrees with the data or with itself.
        GeometryError: the stored geometry is invalid.
        NonFiniteDataError: the data or angles hold NaN or inf.
    """
    p = existing_file(path)
    where = str(p)
    try:
        with h5py.File(p, "r") as f:
            _check_header(f, where)
            geometry = _read_geometry(f, where)
            data = _read_data(f, where, geometry)
            profile = _read_profile(f, where)
            provenance = _provenance(f)
    except OSError as exc:
        if isinstance(exc, CorruptFileError):
            raise
        raise CorruptFileError(
            f"cannot be read as HDF5 ({exc}); the file is truncated or corrupt, copy it again",
            where,
        ) from exc
    return Sinogram(data, geometry, profile, provenance)
