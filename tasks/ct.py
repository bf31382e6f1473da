"""CT data for the tasks: the scanner they are built for, synthetic scans, sinogram checks.

The CT tasks are built for the ``compact-head`` scanner profile. Synthetic records use it
binned 8 x 4 (720 views -> 90, 512 detectors -> 128, same fan and distances) with the photon
counts of the binned elements summed, so they carry the full-resolution dose in 1/32 of the
samples; full-resolution ``compact-head`` sinograms bin to the same model input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from raw_data import (
    DigitalPatient,
    FanBeamGeometry,
    ImageGrid,
    RawDataError,
    ScannerProfile,
    Sinogram,
    fbp,
    get_profile,
    read_sinogram,
    scan_image,
)
from tasks.errors import TaskDataError
from tasks.preprocess import MODEL_GRID, MODEL_PIXEL_MM, attenuation_to_hu

__all__ = [
    "MODEL_SINOGRAM_SHAPE",
    "SOURCE_PROFILE",
    "TASK_PROFILE",
    "fbp_hu",
    "model_geometry",
    "read_task_sinogram",
    "scan_patients",
    "to_model_sinogram",
]

SOURCE_PROFILE: ScannerProfile = get_profile("compact-head")
"""The scanner the CT tasks are built for."""
_VIEW_BIN, _DETECTOR_BIN = 8, 4
_ELEMENTS = _VIEW_BIN * _DETECTOR_BIN
TASK_PROFILE: ScannerProfile = dataclasses.replace(
    SOURCE_PROFILE,
    name="compact-head-binned",
    description="compact-head geometry binned 8 views x 4 detectors, summed counts (MeTAI tasks)",
    n_views=SOURCE_PROFILE.n_views // _VIEW_BIN,
    n_detectors=SOURCE_PROFILE.n_detectors // _DETECTOR_BIN,
    detector_pitch_mm=SOURCE_PROFILE.detector_pitch_mm * _DETECTOR_BIN,
    incident_flux=SOURCE_PROFILE.incident_flux * _ELEMENTS,
    electronic_noise=SOURCE_PROFILE.electronic_noise * math.sqrt(_ELEMENTS),
    detector_blur_fwhm=SOURCE_PROFILE.detector_blur_fwhm / _DETECTOR_BIN,
)
"""The scanner synthetic CT records are acquired with: 90 views x 128 detectors."""
MODEL_SINOGRAM_SHAPE = (TASK_PROFILE.n_views, TASK_PROFILE.n_detectors)
"""``(views, detectors)`` of the sinogram model input."""
_RELATIVE_TOLERANCE = 1e-3


def model_geometry() -> FanBeamGeometry:
    """Return the geometry of the sinogram model: the task profile on the 64 x 64, 4 mm grid."""
    return TASK_PROFILE.geometry(ImageGrid(MODEL_GRID, MODEL_PIXEL_MM))


def scan_patients(patients: Sequence[DigitalPatient], seeds: Sequence[int]) -> list[Sinogram]:
    """Scan each patient with :data:`TASK_PROFILE` (exact line integrals, then noise).

    Parameters:
        patients: digital patients; each is scanned on its own 64 x 64 grid.
        seeds: one noise seed per patient.

    Returns:
        Sinograms ``(90, 128)`` with profile and provenance (phantom description, lesion).
    """
    sinograms = []
    for patient, seed in zip(patients, seeds, strict=True):
        grid = patient.grid(MODEL_GRID[0])
        geometry = TASK_PROFILE.geometry(grid)
        scan = scan_image(
            patient.image(MODEL_GRID[0]),
            grid,
            TASK_PROFILE,
            seed=seed,
            source=patient.description,
            line_integrals=patient.line_integrals(geometry),
        )
        lesions = "; ".join(
            f"centre_mm=({les.center_mm[0]:.1f}, {les.center_mm[1]:.1f}) radius_mm={les.radius_mm:.1f} "
            f"contrast_hu={les.contrast_hu:.0f}"
            for les in patient.lesions
        )
        provenance = {
            **scan.provenance,
            "synthetic": "true",
            "phantom": patient.description,
            "lesion": lesions or "none",
        }
        sinograms.append(Sinogram(scan.data, scan.geometry, scan.profile, provenance))
    return sinograms


def read_task_sinogram(path: Path) -> Sinogram:
    """Read a MeTAI sinogram file, turning every reader error into :class:`TaskDataError`."""
    try:
        return read_sinogram(path)
    except RawDataError as exc:
        raise TaskDataError(f"not a usable CT sinogram record: {exc}") from exc


def _single_slice(sinogram: Sinogram, where: str) -> npt.NDArray[np.float32]:
    data = sinogram.data
    if data.ndim == 3:
        if data.shape[0] != 1:
            raise TaskDataError(
                f"{where}: sinogram holds {data.shape[0]} slices; this task reads one slice per record, "
                "store each slice as its own record"
            )
        data = data[0]
    return data


def _shift(values: npt.NDArray[np.float64], shift: float, axis: int, circular: bool) -> npt.NDArray[np.float64]:
    """Return ``out[i] = values[i - shift]`` along ``axis``, linearly interpolated.

    Circular axes wrap around; others repeat their edge sample.
    """
    n = values.shape[axis]
    position = np.arange(n) - shift
    lower = np.floor(position).astype(int)
    frac = position - lower
    if circular:
        lo, hi = lower % n, (lower + 1) % n
    else:
        lo, hi = np.clip(lower, 0, n - 1), np.clip(lower + 1, 0, n - 1)
    shape = [1] * values.ndim
    shape[axis] = n
    frac = frac.reshape(shape)
    out: npt.NDArray[np.float64] = np.take(values, lo, axis=axis) * (1 - frac) + np.take(values, hi, axis=axis) * frac
    return out


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _RELATIVE_TOLERANCE * max(abs(a), abs(b))


def to_model_sinogram(sinogram: Sinogram, where: str) -> torch.Tensor:
    """Bring a compact-head sinogram onto the model's ``(90, 128)`` samples.

    Integer multiples of 90 views and 128 detectors are averaged in blocks; the block
    centres are then interpolated onto the model's view angles (circularly, so any start
    angle works) and detector fan angles.

    Parameters:
        sinogram: one slice, fan beam, a full rotation, the distances and fan of
            ``compact-head``.
        where: how to name the record in messages.

    Returns:
        float32 ``(90, 128)`` line integrals.

    Raises:
        TaskDataError: several slices, parallel beam, another scanner geometry, partial or
            uneven rotation, or a sampling that is not a multiple of 90 x 128.
    """
    data = _single_slice(sinogram, where).astype(np.float64)
    g = sinogram.geometry
    target = model_geometry()
    if not isinstance(g, FanBeamGeometry):
        raise TaskDataError(f"{where}: parallel-beam sinogram; this task's model needs the fan beam of compact-head")
    for name in ("source_to_isocenter_mm", "source_to_detector_mm", "fan_angle_rad"):
        have, want = getattr(g, name), getattr(target, name)
        if not _close(have, want):
            raise TaskDataError(
                f"{where}: {name} is {have:.4g}, but this task's model is built for the compact-head "
                f"scanner ({want:.4g}); use a study task for this scanner"
            )
    views, detectors = data.shape
    step = 2 * math.pi / views
    angles = g.angles
    if abs(angles - (angles[0] + step * np.arange(views))).max() > 1e-3 * step:
        raise TaskDataError(
            f"{where}: the {views} views are not equally spaced over one full rotation (360 degrees), "
            "which this task's model needs"
        )
    t_views, t_detectors = MODEL_SINOGRAM_SHAPE
    if views % t_views or detectors % t_detectors:
        raise TaskDataError(
            f"{where}: sinogram has {views} views x {detectors} detectors; this task needs "
            f"{t_views} x {t_detectors} or an integer multiple of both (compact-head: 720 x 512)"
        )
    kv, kd = views // t_views, detectors // t_detectors
    binned = data.reshape(t_views, kv, t_detectors, kd).mean(axis=(1, 3))
    # Block j of views is centred on angles[0] + (j * kv + (kv - 1) / 2) * step.
    view_centre = (angles[0] + (kv - 1) / 2 * step) / (kv * step)
    binned = _shift(binned, view_centre, axis=0, circular=True)
    # Detector k sits at (k - detectors // 2) pitches; block b is centred (kd - 1) / (2 kd)
    # model pitches beyond model detector b.
    binned = _shift(binned, (kd - 1) / (2 * kd), axis=1, circular=False)
    return torch.from_numpy(binned.astype(np.float32))


def fbp_hu(sinograms: Sequence[Sinogram], where: str) -> list[tuple[npt.NDArray[np.float64], float]]:
    """Reconstruct sinograms by FBP (Hann filter) and return ``(HU image, pixel size mm)`` each.

    Sinograms sharing one geometry are reconstructed in one batch.

    Raises:
        TaskDataError: several slices, or a geometry FBP cannot reconstruct.
    """
    out: list[tuple[npt.NDArray[np.float64], float]] = [(np.empty(0), 0.0)] * len(sinograms)
    groups: dict[object, list[int]] = {}
    for i, sino in enumerate(sinograms):
        groups.setdefault(sino.geometry, []).append(i)
    for members in groups.values():
        batch = torch.from_numpy(np.stack([_single_slice(sinograms[i], where) for i in members]))
        try:
            with torch.no_grad():
                images = fbp(batch, sinograms[members[0]].geometry, "hann")
        except RawDataError as exc:
            raise TaskDataError(f"{where}: cannot reconstruct the sinogram by FBP: {exc}") from exc
        pixel = sinograms[members[0]].geometry.image.pixel_size_mm
        for i, image in zip(members, images.numpy(), strict=True):
            out[i] = (attenuation_to_hu(image), pixel)
    return out
