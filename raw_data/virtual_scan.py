"""Virtual scanning: turn an attenuation image (a digital patient or a hospital's own DICOM CT
slice) into the raw data a given scanner profile would have measured, and reconstruct it.

A hospital can thus derive shareable virtual raw data from the images it already holds: the
DICOM slice's Hounsfield units become linear attenuation, which any scanner profile then
projects, blurs and samples with its own dose. Provenance records a hash of the pixel data,
never patient identifiers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pydicom
import torch
from pydicom.errors import InvalidDicomError

from raw_data._files import created_by, existing_file, utc_now
from raw_data.errors import CorruptFileError, DataShapeError, DicomFormatError
from raw_data.filtered_backprojection import fbp
from raw_data.geometry import ImageGrid
from raw_data.noise import make_generator, simulate_measurement
from raw_data.phantoms import MU_WATER_PER_MM, hu_to_attenuation
from raw_data.projector import forward_project
from raw_data.scanners import ScannerProfile
from raw_data.sinogram import Sinogram, check_finite

__all__ = ["AttenuationImage", "read_dicom_attenuation", "reconstruct", "scan_image"]


@dataclass(frozen=True, eq=False)
class AttenuationImage:
    """A CT slice as linear attenuation.

    Attributes:
        mu: attenuation, 1/mm, shape ``(rows, cols)``.
        grid: its pixel grid (mm).
        source: where it came from (for provenance), free of patient identifiers.
    """

    mu: npt.NDArray[np.float64]
    grid: ImageGrid
    source: str


def read_dicom_attenuation(path: str | os.PathLike[str]) -> AttenuationImage:
    """Read one DICOM CT slice and convert its Hounsfield units to attenuation.

    Applies RescaleSlope and RescaleIntercept, then ``mu = mu_water * (1 + HU / 1000)``
    clipped at 0, with ``mu_water`` = :data:`raw_data.MU_WATER_PER_MM` (about 70 keV).

    Parameters:
        path: a single-frame CT image file.

    Returns:
        The attenuation image (1/mm) on a grid with the file's PixelSpacing (mm).

    Raises:
        MissingFileError: no such file.
        CorruptFileError: not a DICOM file, or the pixel data cannot be decoded.
        DicomFormatError: not CT, multi-frame, missing PixelSpacing, or non-square pixels.
    """
    p = existing_file(path)
    where = str(p)
    try:
        ds = pydicom.dcmread(p)
        pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    except (InvalidDicomError, AttributeError, ValueError, OSError) as exc:
        raise CorruptFileError(f"cannot be read as a DICOM image ({exc})", where) from exc
    modality = ds.get("Modality", "")
    if modality != "CT":
        raise DicomFormatError(
            f"Modality is {modality!r}, expected 'CT'; only CT slices carry Hounsfield units",
            where,
        )
    if pixels.ndim != 2:
        raise DicomFormatError(
            f"pixel data has shape {pixels.shape}, expected one slice (rows, cols); split multi-frame files first",
            where,
        )
    spacing = ds.get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        raise DicomFormatError("PixelSpacing (0028,0030) is missing; pixel size is required", where)
    row_mm, col_mm = float(spacing[0]), float(spacing[1])
    if abs(row_mm - col_mm) > 1e-3 * max(row_mm, col_mm):
        raise DicomFormatError(
            f"PixelSpacing is {row_mm} x {col_mm} mm; square pixels are required (resample first)",
            where,
        )
    slope = float(ds.get("RescaleSlope", 1.0))
    intercept = float(ds.get("RescaleIntercept", 0.0))
    hu = pixels * slope + intercept
    check_finite(hu, "pixel data", where)
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    return AttenuationImage(
        mu=hu_to_attenuation(hu),
        grid=ImageGrid((int(hu.shape[0]), int(hu.shape[1])), col_mm),
        source=f"dicom pixel-data sha256:{digest}",
    )


def scan_image(
    mu: npt.NDArray[np.floating],
    grid: ImageGrid,
    profile: ScannerProfile,
    *,
    seed: int,
    dose_factor: float = 1.0,
    noise: bool = True,
    source: str = "",
    line_integrals: npt.NDArray[np.floating] | None = None,
    device: torch.device | str = "cpu",
) -> Sinogram:
    """Scan an attenuation image with a scanner profile: project, blur, add noise, log.

    Parameters:
        mu: attenuation, 1/mm, shape ``grid.shape`` (rows, cols).
        grid: the image's pixel grid (mm); it is also the reconstruction grid.
        profile: the scanner to imitate.
        seed: seed of the noise generator.
        dose_factor: multiplies the profile's incident flux (0.25 = quarter dose).
        noise: add Poisson, electronic noise and blur (False: noiseless line integrals).
        source: description of the scanned object for the provenance.
        line_integrals: exact line integrals to use instead of projecting ``mu`` (for
            analytic phantoms), shape ``(views, detectors)``.
        device: torch device to compute on.

    Returns:
        The measured sinogram ``(views, detectors)`` with geometry, profile and provenance.

    Raises:
        DataShapeError: ``mu`` does not match ``grid``.
        NonFiniteDataError: ``mu`` holds NaN or inf.
        GeometryError: the grid does not fit the scanner, or a non-positive dose.
    """
    image = np.asarray(mu, dtype=np.float64)
    if image.shape != grid.shape:
        raise DataShapeError(f"image has shape {image.shape}, expected the grid's {grid.shape}")
    check_finite(image, "attenuation image")
    geometry = profile.geometry(grid)
    if line_integrals is None:
        clean = forward_project(torch.as_tensor(image, dtype=torch.float32, device=device), geometry)
    else:
        clean = torch.as_tensor(np.asarray(line_integrals), dtype=torch.float32, device=device)
        if tuple(clean.shape) != geometry.sinogram_shape:
            raise DataShapeError(f"line_integrals have shape {tuple(clean.shape)}, expected {geometry.sinogram_shape}")
    flux = profile.incident_flux * dose_factor
    if noise:
        measured = simulate_measurement(
            clean,
            flux,
            profile.electronic_noise,
            blur_fwhm=profile.detector_blur_fwhm,
            generator=make_generator(seed, clean.device),
        )
    else:
        measured = clean
    provenance: Mapping[str, str] = {
        "created_by": created_by(),
        "created_at": utc_now(),
        "source": source,
        "scanner_profile": profile.name,
        "noise_seed": str(seed),
        "dose_factor": repr(dose_factor),
        "incident_flux": repr(flux),
        "noise": "poisson+electronic+blur" if noise else "none",
        "mu_water_per_mm": repr(MU_WATER_PER_MM),
    }
    return Sinogram(measured.cpu().numpy(), geometry, profile, provenance)


def reconstruct(
    sinogram: Sinogram, *, filter_name: str = "hann", device: torch.device | str = "cpu"
) -> npt.NDArray[np.float32]:
    """Reconstruct a sinogram on its geometry's grid by filtered back-projection.

    Parameters:
        sinogram: line integrals with their geometry.
        filter_name: ``"ramp"``, ``"shepp-logan"``, ``"cosine"`` or ``"hann"``.
        device: torch device to compute on.

    Returns:
        Attenuation, 1/mm, shape ``(rows, cols)`` or ``(slices, rows, cols)``.

    Raises:
        GeometryError: unknown filter or incomplete angular coverage.
    """
    with torch.no_grad():
        image = fbp(sinogram.tensor(device), sinogram.geometry, filter_name)
    return np.asarray(image.cpu().numpy(), dtype=np.float32)
