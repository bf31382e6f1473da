"""Rebuild a MeTAI CT sinogram file from its allow-list (``docs/formats/ct-sinogram.md``).

The source is opened read-only; the output is a new HDF5 file built in memory from the rows of
:data:`SINOGRAM_RULES` alone, so an attribute, dataset, group, link or named type the list does not
name never reaches it, and nothing is written to disk on the way.
"""

from __future__ import annotations

import io
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.raw_deid.h5 import local_object, local_values
from node.raw_deid.provenance import PROVENANCE_RULES, clean_provenance
from node.raw_deid.rules import DROP, FieldRule, RuleSet, check

__all__ = ["SINOGRAM_RULES", "UNLISTED_SCANNER", "rebuild_sinogram"]

UNLISTED_SCANNER = "unlisted"
_UNLISTED_DESCRIPTION = "a scanner profile not listed in raw_data.scanners; its name and description were removed"


def _profiles() -> dict[str, Any]:
    from raw_data.scanners import PROFILES

    return dict(PROFILES)


def _node_software() -> str:
    try:
        version = metadata.version("metai-exchange")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"metai-exchange node {version} (raw de-identification)"


_PS315 = "PS3.15 keeps acquisition parameters"
# Physical ranges of the kept numbers (inclusive). Text packed into a number's bytes makes an absurd
# value (four ASCII letters are a float32 near 1e16 or 1e22), which these refuse; a number inside its
# range still has free low-order bits, as every measured value does.
_COUNT = (1.0, 100_000.0)  # views or detector elements
_GRID = (1.0, 16_384.0)  # reconstruction rows or columns
_PITCH_MM = (1e-3, 100.0)  # detector or pixel pitch
_DISTANCE_MM = (1.0, 10_000.0)  # source to isocentre or detector: within 10 m
_MAX_ANGLE_RAD = 4 * np.pi  # a scan covers at most a few turns
_MAX_LINE_INTEGRAL = 1e4  # attenuation x path length: under 100 for any body, 1e4 leaves room for calibration
SINOGRAM_RULES = RuleSet((
    FieldRule("/", "structure", "keep", "the file"),
    FieldRule("/@format", "derived", "replace", "format name, written by the node (the reader checked the input's)"),
    FieldRule("/@format_version", "derived", "replace",
              "the layout version the node writes (1.0); the input's major version was checked by the reader"),
    FieldRule("/@created_by", "derived", "replace", "free text naming software: replaced by the node's own name"),
    FieldRule("/@created_at", "datetime", "shift", "creation time: shifted with the patient's dates"),
    FieldRule("/sinogram", "data", "keep", "the measured line integrals (float32, gzip): the data themselves; "
              f"each value must be finite and within +-{_MAX_LINE_INTEGRAL:g}, else the file is refused"),
    FieldRule("/sinogram@axes", "enumerated", "keep", "axis order", values=("views,detectors",
                                                                            "slices,views,detectors")),
    FieldRule("/sinogram@quantity", "enumerated", "keep", "what the values are", values=("line_integral",)),
    FieldRule("/sinogram@units", "enumerated", "keep", "unit of the values", values=("1",)),
    FieldRule("/geometry", "structure", "keep", "the acquisition geometry, required to reconstruct"),
    FieldRule("/geometry@type", "enumerated", "keep", "beam geometry", values=("parallel", "fan-equiangular")),
    FieldRule("/geometry@n_views", "integer", "keep", _PS315 + "; the reader checks it against the angles",
              limits=_COUNT),
    FieldRule("/geometry@n_detectors", "integer", "keep", _PS315 + "; the reader checks it against the data",
              limits=_COUNT),
    FieldRule("/geometry@detector_pitch_mm", "real", "keep", _PS315, limits=_PITCH_MM),
    FieldRule("/geometry@image_rows", "integer", "keep", "reconstruction grid", limits=_GRID),
    FieldRule("/geometry@image_cols", "integer", "keep", "reconstruction grid", limits=_GRID),
    FieldRule("/geometry@pixel_size_mm", "real", "keep", "reconstruction grid", limits=_PITCH_MM),
    FieldRule("/geometry@source_to_isocenter_mm", "real", "keep", _PS315, limits=_DISTANCE_MM),
    FieldRule("/geometry@source_to_detector_mm", "real", "keep", _PS315, limits=_DISTANCE_MM),
    FieldRule("/geometry/angles_rad", "data", "keep", "view angles (float64, radians), required to reconstruct; "
              f"each must be finite and within +-4 pi ({_MAX_ANGLE_RAD:.4f}), else the file is refused"),
    FieldRule("/geometry/angles_rad@units", "enumerated", "keep", "unit of the angles", values=("rad",)),
    FieldRule("/scanner", "structure", "keep", "the scanner profile, which explains the data's noise and blur"),
    FieldRule("/scanner@name", "enumerated", "keep",
              "a profile listed in raw_data.scanners; any other name is free text and replaced "
              "(the reader needs a name)", values=tuple(_profiles()), fallback=UNLISTED_SCANNER),
    FieldRule("/scanner@description", "derived", "replace",
              "free text: replaced by the listed profile's own description, or by a fixed note"),
    *(FieldRule(f"/scanner@{key}", "integer", "keep", _PS315, limits=_COUNT) for key in ("n_detectors", "n_views")),
    FieldRule("/scanner@detector_pitch_mm", "real", "keep", _PS315, limits=_PITCH_MM),
    *(FieldRule(f"/scanner@{key}", "real", "keep", _PS315, limits=_DISTANCE_MM) for key in (
        "source_to_isocenter_mm", "source_to_detector_mm")),
    FieldRule("/scanner@incident_flux", "real", "keep", _PS315 + " (photons per element and view)",
              limits=(0.0, 1e12)),
    FieldRule("/scanner@electronic_noise", "real", "keep", _PS315 + " (standard deviation, in photons)",
              limits=(0.0, 1e6)),
    FieldRule("/scanner@detector_blur_fwhm", "real", "keep", _PS315 + " (in detector elements)",
              limits=(0.0, 100.0)),
    FieldRule("/provenance", "structure", "keep", "how the data were made; only the keys below"),
    *(rule.at(f"/provenance@{rule.path}") for rule in PROVENANCE_RULES),
))
_DATASETS = {"/sinogram": (np.float32, "gzip"), "/geometry/angles_rad": (np.float64, None)}
_REQUIRED = ("/sinogram", "/geometry", "/geometry/angles_rad")
_SCANNER_KEYS = tuple(r.path.split("@")[1] for r in SINOGRAM_RULES if r.path.startswith("/scanner@"))


def rebuild_sinogram(source: Path, patient: PatientContext, uids: UidMapper) -> tuple[bytes, tuple[str, ...]]:
    """Return a new sinogram file holding only the allowed fields of ``source``, and notes for the report.

    Parameters:
        source: the validated source file (opened read-only).
        patient: the pseudonym and date offset.
        uids: the node's UID mapper.

    Raises:
        DeidentificationError: a required dataset has the wrong type, or a date cannot be shifted.
    """
    with h5py.File(source, "r") as src:
        plan = _plan(src, patient, uids)
        flags = _notes(src, plan)
    return _write(plan), flags


def _plan(src: h5py.File, patient: PatientContext, uids: UidMapper) -> dict[str, dict[str, Any]]:
    """What to write: for each object path, its attributes and (for datasets) its values."""
    from raw_data.sinogram_io import FORMAT_NAME, FORMAT_VERSION

    plan: dict[str, dict[str, Any]] = {}
    for rule in SINOGRAM_RULES:
        obj_path, _, key = rule.path.partition("@")
        if key or rule.action != "keep" or obj_path in plan:
            continue
        obj = local_object(src, obj_path)
        if isinstance(obj, h5py.Group):
            plan[obj_path] = {"@": {}}
        elif obj_path in _DATASETS and isinstance(obj, h5py.Dataset):
            plan[obj_path] = {"@": {}, "data": _numeric(obj, obj_path)}
    missing = [path for path in _REQUIRED if path not in plan]
    if missing:
        raise DeidentificationError(
            f"{', '.join(missing)} cannot be read from the file itself (absent, or a link to another file, which "
            "the node never follows); copy the data into the file and ingest it again"
        )
    for rule in SINOGRAM_RULES:
        obj_path, _, key = rule.path.partition("@")
        if key and obj_path in plan and obj_path != "/provenance" and rule.kind != "derived":
            value = check(rule, _attr(local_object(src, obj_path), key), patient, uids)
            if value is not DROP:
                plan[obj_path]["@"][key] = value
    root = plan["/"]["@"]
    root.update({"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "created_by": _node_software()})
    if "/scanner" in plan:
        _scanner(plan)
    # Always written: the stored file names its pseudonym and what was done, even if the source had no provenance.
    provenance = local_object(src, "/provenance") if "/provenance" in plan else None
    items = [] if provenance is None else [(key, _attr(provenance, key)) for key in provenance.attrs]
    plan["/provenance"] = {"@": dict(clean_provenance(items, patient, uids))}
    return plan


def _attr(obj: Any, key: str) -> Any:
    """An attribute's value, or None if absent or of a type h5py cannot read (it is then dropped)."""
    if key not in obj.attrs:
        return None
    try:
        return obj.attrs[key]
    except (OSError, TypeError, ValueError):
        return None


def _scanner(plan: dict[str, dict[str, Any]]) -> None:
    attrs = plan["/scanner"]["@"]
    profile = _profiles().get(attrs.get("name"))
    attrs["description"] = profile.description if profile is not None else _UNLISTED_DESCRIPTION
    if any(key not in attrs for key in _SCANNER_KEYS):
        del plan["/scanner"]  # the reader needs the whole profile or none of it


def _numeric(dset: h5py.Dataset, where: str) -> np.ndarray:
    dtype, _ = _DATASETS[where]
    if dset.dtype.kind not in "fiu":
        raise DeidentificationError(f"{where} holds {dset.dtype} values, expected numbers; the file is not a "
                                    "valid sinogram (see docs/formats/ct-sinogram.md)")
    values = np.asarray(local_values(dset, where), dtype=dtype)
    bound = _MAX_ANGLE_RAD if where == "/geometry/angles_rad" else _MAX_LINE_INTEGRAL
    bad = np.flatnonzero(~(np.isfinite(values) & (np.abs(values) <= bound)))
    if bad.size:
        # Neither the values nor their positions' content go into the message: only how many.
        raise DeidentificationError(
            f"{where} holds {bad.size} of {values.size} values that are not finite or lie beyond +-{bound:g}, "
            "which no scan produces; the values are damaged or carry other data, so the file is refused: "
            "correct them and ingest the file again"
        )
    return values


def _notes(src: h5py.File, plan: dict[str, dict[str, Any]]) -> tuple[str, ...]:
    """Counts of what was left out (never names: a name can itself be the identifier)."""
    objects: list[str] = []
    src.visit(objects.append)
    dropped = sum(1 for name in objects if "/" + name not in plan)
    notes = [f"raw de-identification left out {dropped} HDF5 objects not on the sinogram allow-list"] if dropped else []
    if "/scanner" in src and plan.get("/scanner", {}).get("@", {}).get("name") == UNLISTED_SCANNER:
        notes.append("scanner profile not listed in raw_data.scanners: its name and description were replaced")
    return tuple(notes)


def _write(plan: dict[str, dict[str, Any]]) -> bytes:
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as dst:
        for obj_path, content in plan.items():
            if "data" in content:
                _, compression = _DATASETS[obj_path]
                obj: Any = dst.create_dataset(obj_path, data=content["data"], compression=compression)
            else:
                obj = dst if obj_path == "/" else dst.create_group(obj_path)
            for key, value in content["@"].items():
                obj.attrs[key] = value
    return buffer.getvalue()
