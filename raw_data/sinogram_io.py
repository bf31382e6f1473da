"""Read and write CT sinograms in the MeTAI HDF5 layout (``docs/formats/ct-sinogram.md``).

The layout is plain HDF5 (datasets, groups, scalar attributes with units in their names),
so ``h5dump``, HDFView, MATLAB or h5py read it without this library. Writes are atomic;
reads validate everything and raise an error naming the problem and the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import h5py
import numpy as np

from raw_data._files import atomic_target, created_by, existing_file, utc_now
from raw_data._hdf5 import Hdf5File
from raw_data.errors import (
    DataShapeError,
    GeometryError,
    HeaderMismatchError,
    MissingFieldError,
    SinogramFormatError,
)
from raw_data.formats import SINOGRAM_FORMAT
from raw_data.geometry import FanBeamGeometry, Geometry, ImageGrid, ParallelBeamGeometry
from raw_data.scanners import ScannerProfile
from raw_data.sinogram import Sinogram, check_finite

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "is_sinogram", "read_sinogram", "write_sinogram"]

FORMAT_NAME = SINOGRAM_FORMAT
FORMAT_VERSION = "1.0"
_AXES = {2: "views,detectors", 3: "slices,views,detectors"}
_PARALLEL, _FAN = "parallel", "fan-equiangular"
_GRID_KEYS = ("image_rows", "image_cols", "pixel_size_mm")
_FAN_KEYS = ("source_to_isocenter_mm", "source_to_detector_mm")
_PROFILE_KEYS = tuple(ScannerProfile.__dataclass_fields__)


def write_sinogram(path: str | os.PathLike[str], sinogram: Sinogram, *, compress: bool = True) -> None:
    """Write a sinogram, its geometry, scanner profile and provenance to an HDF5 file.

    The file appears complete or not at all: the data go to a temporary file in the same
    directory, which then replaces ``path``.

    Parameters:
        path: destination ``.h5`` file; an existing file is replaced.
        sinogram: the sinogram (line integrals, ``(views, detectors)`` or
            ``(slices, views, detectors)``).
        compress: store the data with HDF5's gzip filter (noisy line integrals shrink by about
            a fifth, and most of the writing time goes into it); False for a file that is
            read back at once and deleted. Readers handle either.

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
        data = f.create_dataset("sinogram", data=sinogram.data.astype(np.float32),
                                 compression="gzip" if compress else None)
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


def _attr(h5: Hdf5File, group: Any, key: str) -> Any:
    value = h5.attr(group, key)
    if value is None:
        raise MissingFieldError(
            f"attribute {key!r} missing from {group.name}; the file is not a complete "
            f"{FORMAT_NAME} (see docs/formats/ct-sinogram.md)",
            h5.where,
        )
    return value


def _number(h5: Hdf5File, group: Any, key: str, kind: type) -> Any:
    value = _attr(h5, group, key)
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise HeaderMismatchError(
            f"{group.name} attribute {key!r} is {value!r}, expected a {kind.__name__}", h5.where
        ) from None
    if kind is float and not math.isfinite(number):
        raise HeaderMismatchError(f"{group.name} attribute {key!r} is {number}, expected a finite number", h5.where)
    return number


def _check_header(h5: Hdf5File) -> None:
    fmt = h5.attr(h5.root, "format")
    if fmt != FORMAT_NAME:
        raise SinogramFormatError(
            f"root attribute 'format' is {fmt!r}, expected {FORMAT_NAME!r}; this is not a "
            "MeTAI CT sinogram (for ISMRMRD k-space use read_ismrmrd)",
            h5.where,
        )
    version = str(_attr(h5, h5.root, "format_version"))
    if version.split(".")[0] != FORMAT_VERSION.split(".")[0]:
        raise SinogramFormatError(
            f"format_version {version!r} is not supported (this reader reads "
            f"{FORMAT_VERSION.split('.')[0]}.x); upgrade metai-exchange",
            h5.where,
        )


def _read_geometry(h5: Hdf5File) -> Geometry:
    path = h5.where
    geo = h5.child(h5.root, "geometry")
    if not isinstance(geo, h5py.Group):
        raise MissingFieldError("group /geometry is missing; the geometry is required", path)
    kind = _attr(h5, geo, "type")
    stored = h5.child(geo, "angles_rad")
    if not isinstance(stored, h5py.Dataset):
        raise MissingFieldError("dataset /geometry/angles_rad is missing", path)
    shape, dtype = h5.describe(stored)
    if len(shape) != 1 or dtype.kind not in "fiu":
        raise DataShapeError(f"/geometry/angles_rad has shape {shape} and type {dtype}, expected (views,) floats", path)
    n_views = _number(h5, geo, "n_views", int)
    if n_views != shape[0]:
        raise HeaderMismatchError(
            f"/geometry n_views is {n_views} but /geometry/angles_rad holds {shape[0]} angles",
            path,
        )
    angles = np.asarray(h5.read(stored), dtype=np.float64)
    check_finite(angles, "/geometry/angles_rad", path)
    rows, cols, pixel = (_number(h5, geo, k, t) for k, t in zip(_GRID_KEYS, (int, int, float), strict=True))
    common: dict[str, Any] = {
        "angles_rad": tuple(angles.tolist()),
        "n_detectors": _number(h5, geo, "n_detectors", int),
        "detector_pitch_mm": _number(h5, geo, "detector_pitch_mm", float),
    }
    try:
        image = ImageGrid((rows, cols), pixel)
        if kind == _PARALLEL:
            return ParallelBeamGeometry(image=image, **common)
        if kind == _FAN:
            sid, sdd = (_number(h5, geo, k, float) for k in _FAN_KEYS)
            return FanBeamGeometry(image=image, source_to_isocenter_mm=sid, source_to_detector_mm=sdd, **common)
    except GeometryError as exc:
        raise GeometryError(f"invalid /geometry: {exc}", path) from exc
    raise SinogramFormatError(f"/geometry type is {kind!r}, expected {_PARALLEL!r} or {_FAN!r}", path)


def _read_profile(h5: Hdf5File) -> ScannerProfile | None:
    group = h5.child(h5.root, "scanner")
    if group is None:
        return None
    if not isinstance(group, h5py.Group):
        raise SinogramFormatError("/scanner is not a group; it must hold the profile as attributes", h5.where)
    kinds = {"name": str, "description": str, "n_detectors": int, "n_views": int}
    values = {k: _number(h5, group, k, kinds.get(k, float)) for k in _PROFILE_KEYS}
    try:
        return ScannerProfile(**values)
    except GeometryError as exc:
        raise GeometryError(f"invalid /scanner: {exc}", h5.where) from exc


def _read_data(h5: Hdf5File, geometry: Geometry) -> np.ndarray:
    path = h5.where
    dset = h5.child(h5.root, "sinogram")
    if not isinstance(dset, h5py.Dataset):
        raise MissingFieldError("dataset /sinogram is missing", path)
    shape, dtype = h5.describe(dset)
    if dtype.kind != "f":
        raise DataShapeError(f"/sinogram has dtype {dtype}, expected float32", path)
    if len(shape) not in (2, 3):
        raise DataShapeError(
            f"/sinogram has {len(shape)} dimensions, expected 2 (views, detectors) or 3 (slices, views, detectors)",
            path,
        )
    if shape[-2:] != geometry.sinogram_shape:
        raise HeaderMismatchError(
            f"/sinogram has shape {shape} but /geometry describes (views, detectors) = {geometry.sinogram_shape}",
            path,
        )
    data = np.asarray(h5.read(dset), dtype=np.float32)
    check_finite(data, "/sinogram", path)
    return data


def _provenance(h5: Hdf5File) -> Mapping[str, str]:
    group = h5.child(h5.root, "provenance")
    if group is None:
        return {}
    return {k: str(v) for k, v in h5.attrs(group).items()}


def is_sinogram(path: str | os.PathLike[str]) -> bool:
    """Tell whether ``path`` is a MeTAI sinogram file, by its root ``format`` attribute.

    Use it to choose a reader for an HDF5 file (sinogram or ISMRMRD); it opens the file
    with the same guards as :func:`read_sinogram`.

    Parameters:
        path: an HDF5 file.

    Returns:
        True if the root attribute ``format`` is ``"metai-ct-sinogram"``.

    Raises:
        MissingFileError: no such file.
        CorruptFileError: not HDF5, truncated or unreadable.
    """
    p = existing_file(path)
    with Hdf5File(p) as h5:
        return bool(h5.attr(h5.root, "format") == FORMAT_NAME)


def read_sinogram(path: str | os.PathLike[str]) -> Sinogram:
    """Read and validate a sinogram file written by :func:`write_sinogram` (format 1.x).

    Parameters:
        path: the ``.h5`` file.

    Returns:
        The sinogram: data ``(views, detectors)`` or ``(slices, views, detectors)`` float32,
        geometry (mm, radians), scanner profile (or None) and provenance.

    Raises:
        MissingFileError: no such file.
        CorruptFileError: not HDF5, truncated or unreadable, or a dataset keeps its values in
            other files (external raw storage, a virtual dataset).
        SinogramFormatError: not a MeTAI sinogram, or an unsupported major version.
        MissingFieldError: a required group, dataset or attribute is absent.
        DataShapeError: the data have the wrong rank or type.
        HeaderMismatchError: the geometry disagrees with the data or with itself.
        GeometryError: the stored geometry is invalid.
        NonFiniteDataError: the data or angles hold NaN or inf.
    """
    with Hdf5File(existing_file(path)) as h5:
        _check_header(h5)
        geometry = _read_geometry(h5)
        data = _read_data(h5, geometry)
        profile = _read_profile(h5)
        provenance = _provenance(h5)
    return Sinogram(data, geometry, profile, provenance)
