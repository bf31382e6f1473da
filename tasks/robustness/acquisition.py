"""Virtual acquisitions: each held-out patient scanned under each condition, as a record file.

A condition is a scanner and an acquisition level. For the CT tasks the scanners are every
profile of :data:`raw_data.PROFILES`, scanned at full resolution from the patient's exact
line integrals, and the level is the dose (a factor on the profile's incident flux). For the
MR task the scanners are receive coil arrays of 2, 4 and 8 coils (the task trains on 4) and
the level is the k-space noise (1x is the task's training noise, 2x halves the SNR).

Records are written in the format a hospital node stores and read back by the task's own
:meth:`tasks.Task.load_record`, so the model sees exactly what it would see at a node:

- ``ct-image-lesion-v1`` reads the sinogram and reconstructs it by FBP on a 2 mm grid,
  then resamples to its 4 mm model grid.
- ``ct-sinogram-lesion-v1`` reads only the compact-head geometry. Sinograms of the other
  scanners are first rebinned to it, ray by ray (:func:`rebin_fan_beam`), as a site with
  another scanner would have to do before using this model.
- ``mr-kspace-lesion-v1`` reads ISMRMRD k-space.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from raw_data import (
    PROFILES,
    FanBeamGeometry,
    Sinogram,
    coil_sensitivities,
    get_profile,
    scan_image,
    simulate_kspace,
    write_ismrmrd,
    write_sinogram,
)
from raw_data.formats import ISMRMRD_FORMAT, SINOGRAM_FORMAT
from tasks.ct import SOURCE_PROFILE
from tasks.errors import TaskDataError
from tasks.mr_kspace import mr_image
from tasks.preprocess import MODEL_GRID
from tasks.robustness.cohort import HeldOutPatient

__all__ = [
    "CT_DOSES",
    "MR_COILS",
    "MR_NOISE",
    "MR_NOISE_STD",
    "Condition",
    "conditions_for",
    "rebin_fan_beam",
    "write_records",
]

SINOGRAM_TASK = "ct-sinogram-lesion-v1"
MR_TASK = "mr-kspace-lesion-v1"
CT_DOSES = (1.0, 0.25)
"""Dose factors every CT scanner is evaluated at: full and quarter dose."""
MR_COILS = (2, 4, 8)
"""Receive coil counts of the MR "scanners"."""
MR_NOISE = (1.0, 2.0)
"""Factors on the k-space noise of the MR task's training records."""
MR_NOISE_STD = 0.04
"""Noise of the MR task's synthetic records per k-space sample (tests check they agree)."""
_MR_OVERSAMPLING = 2
_CT_RECON_SIZE = 128  # 2 mm pixels over the 256 mm field: reconstructed finer than the model grid


@dataclass(frozen=True)
class Condition:
    """One scanner at one acquisition level.

    Attributes:
        scanner: a CT profile name, or ``"mr-<n>-coil"``.
        level_dimension: ``"dose"`` (CT) or ``"noise"`` (MR).
        factor: dose factor (CT) or noise factor (MR).
    """

    scanner: str
    level_dimension: str
    factor: float

    @property
    def level(self) -> str:
        """Return the level as the report names it: ``"dose 25 %"``, ``"noise x2"``."""
        if self.level_dimension == "dose":
            return f"dose {self.factor * 100:.0f} %"
        return f"noise x{self.factor:g}"


def conditions_for(task_code: str, doses: tuple[float, ...] = CT_DOSES) -> list[Condition]:
    """Return every condition a task is evaluated under, scanners major, levels minor.

    Raises:
        TaskDataError: an empty dose list, a dose that is not positive, or a repeated dose.
    """
    if task_code == MR_TASK:
        return [Condition(f"mr-{c}-coil", "noise", f) for c in MR_COILS for f in MR_NOISE]
    if not doses or not all(math.isfinite(d) and d > 0 for d in doses) or len(set(doses)) != len(doses):
        raise TaskDataError(
            f"doses are {doses}, expected one or more distinct positive dose factors such as (1.0, 0.25)"
        )
    return [Condition(name, "dose", d) for name in PROFILES for d in doses]


def rebin_fan_beam(data: npt.NDArray[np.floating], source: FanBeamGeometry, target: FanBeamGeometry) -> Sinogram:
    """Resample a full-rotation fan-beam sinogram onto another fan-beam geometry, ray by ray.

    Target ray ``(beta, gamma)`` is the line at angle ``theta = beta - gamma`` and distance
    ``t = R_target sin(gamma)`` from the axis; the source ray on the same line has
    ``gamma' = asin(t / R_source)`` and ``beta' = theta + gamma'``. Its value is interpolated
    bilinearly (views circularly).

    Parameters:
        data: line integrals ``(views, detectors)`` measured with ``source``.
        source: full-rotation fan-beam geometry of ``data``, equally spaced views.
        target: the geometry to resample to; its field of view must lie within the source's.

    Returns:
        A sinogram on ``target`` (no profile, no provenance).

    Raises:
        TaskDataError: the target sees farther from the axis than the source.
    """
    gamma_t = target.fan_angles()[None, :]
    t = target.source_to_isocenter_mm * np.sin(gamma_t)
    ratio = t / source.source_to_isocenter_mm
    gamma_s = np.arcsin(np.clip(ratio, -1, 1))
    half = source.n_detectors // 2
    det = gamma_s / source.angular_pitch_rad + half
    if det.min() < 0 or det.max() > source.n_detectors - 1:
        raise TaskDataError(
            f"target field of view {target.field_of_view_mm:.0f} mm exceeds the source scanner's "
            f"{source.field_of_view_mm:.0f} mm; rays at its edge were never measured"
        )
    beta_s = target.angles[:, None] - gamma_t + gamma_s
    step = 2 * math.pi / source.n_views
    view = np.mod(beta_s - source.angles[0], 2 * math.pi) / step
    v0 = np.floor(view).astype(int)
    fv = view - v0
    d0 = np.clip(np.floor(det).astype(int), 0, source.n_detectors - 2)
    fd = det - d0
    v0, v1 = v0 % source.n_views, (v0 + 1) % source.n_views
    values = np.asarray(data, dtype=np.float64)
    out = (
        values[v0, d0] * (1 - fv) * (1 - fd)
        + values[v1, d0] * fv * (1 - fd)
        + values[v0, d0 + 1] * (1 - fv) * fd
        + values[v1, d0 + 1] * fv * fd
    )
    return Sinogram(out.astype(np.float32), target)


def _ct_records(
    task_code: str,
    held: HeldOutPatient,
    conditions: Sequence[Condition],
    noise_seeds: Sequence[int],
    paths: Sequence[Path],
) -> None:
    """Write one patient's records of one CT scanner at several doses (exact line integrals once)."""
    patient = held.patient
    profile = get_profile(conditions[0].scanner)
    grid = patient.grid(_CT_RECON_SIZE)
    geometry = profile.geometry(grid)
    line_integrals = patient.line_integrals(geometry)
    for condition, noise_seed, path in zip(conditions, noise_seeds, paths, strict=True):
        scan = scan_image(
            np.zeros(grid.shape),  # only its shape is used: the exact line integrals are given
            grid,
            profile,
            seed=noise_seed,
            dose_factor=condition.factor,
            source=patient.description,
            line_integrals=line_integrals,
        )
        provenance = {**scan.provenance, "synthetic": "true", "phantom": patient.description}
        if task_code == SINOGRAM_TASK and profile.name != SOURCE_PROFILE.name:
            target = SOURCE_PROFILE.geometry(grid)
            provenance["rebinned_from"] = profile.name
            rebinned = rebin_fan_beam(scan.data, geometry, target)
            record = Sinogram(rebinned.data, target, SOURCE_PROFILE, provenance)
        else:
            record = Sinogram(scan.data, scan.geometry, scan.profile, provenance)
        write_sinogram(path, record, compress=False)  # read back by the task's loader, then deleted


def _mr_record(held: HeldOutPatient, condition: Condition, noise_seed: int, path: Path) -> None:
    coils = int(condition.scanner.split("-")[1])
    patient = held.patient
    kspace = simulate_kspace(
        mr_image(patient, MODEL_GRID[0]),
        coil_sensitivities(MODEL_GRID, coils),
        noise_std=MR_NOISE_STD * condition.factor,
        seed=noise_seed,
        readout_oversampling=_MR_OVERSAMPLING,
        fov_mm=(patient.fov_mm, patient.fov_mm),
    )
    provenance = {**kspace.provenance, "synthetic": "true", "phantom": patient.description}
    # A scanner exports neither the true image nor the coil maps.
    write_ismrmrd(path, dataclasses.replace(kspace, reference=None, coil_maps=None, provenance=provenance))


def write_records(
    task_code: str,
    held: HeldOutPatient,
    conditions: Sequence[Condition],
    noise_seeds: Sequence[int],
    folder: Path,
) -> list[tuple[Path, str]]:
    """Acquire one patient on one scanner at each of its levels; write the records a node stores.

    Parameters:
        task_code: the task the records are for (decides format and rebinning).
        held: the patient.
        conditions: conditions of one scanner (levels differ).
        noise_seeds: one acquisition-noise seed per condition.
        folder: where to write.

    Returns:
        ``(path, format)`` per condition, for :meth:`tasks.Task.load_record`.

    Raises:
        TaskDataError: conditions of more than one scanner.
    """
    if len({c.scanner for c in conditions}) != 1:
        raise TaskDataError(f"conditions {conditions} span several scanners; pass one scanner's conditions")
    paths = [folder / f"p{held.index:04d}-{c.scanner}-{c.factor:g}.h5" for c in conditions]
    if task_code == MR_TASK:
        for condition, noise_seed, path in zip(conditions, noise_seeds, paths, strict=True):
            _mr_record(held, condition, noise_seed, path)
        return [(path, ISMRMRD_FORMAT) for path in paths]
    _ct_records(task_code, held, conditions, noise_seeds, paths)
    return [(path, SINOGRAM_FORMAT) for path in paths]
