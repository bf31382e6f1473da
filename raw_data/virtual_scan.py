"""Virtual scanning: turn an attenuation image (a digital patient or a hospital's own DICOM CT
slice) into the raw data a given scanner profile would have measured, and reconstruct it.

A hospital can thus derive shareable virtual raw data from the images it already holds: the
DICOM slice's Hounsfield units become linear attenuation, which any scanner profile then
projects, blurs and samples with its own dose. Provenance records a hash of the pixel data,
never patient identifiers.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from raw_data._files import created_by, existing_file, utc_now
from raw_data.errors import CorruptFileError, DataShapeError, DicomFormatError, GeometryError
from raw_data.filtered_backprojection import fbp
from raw_data.geometry import ImageGrid
from raw_data.noise import make_generator, simulate_measurement
from raw_data.phantoms import MU_WATER_PER_MM, hu_to_attenuation
from raw_data.projector import forward_project
from raw_data.scanners import ScannerProfile
from raw_data.sinogram import Sinogram, check_finite

__all__ = ["AttenuationImage", "read_dicom_attenuation", "reconstruct", "scan_image"]

# Lossless and lossy codecs stay far below this ratio on CT slices.
_MAX_DECODE_RATIO = 1100
# What pydicom and its pixel handlers raise on damaged files: bad lengths, tags, values
# (invalid DS/IS strings), transfer syntaxes or codec streams; and pydicom.errors.InvalidDicomError.
# pydicom is imported where a DICOM file is read: the scans and tasks that never read one do not load it.
_PYDICOM_ERRORS = (
    AttributeError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
    EOFError,
    OSError,
    struct.error,
)


@contextlib.contextmanager
def _decoding(where: str, failure: str) -> Iterator[None]:
    """Turn pydicom's exceptions inside the block (third-party calls only) into CorruptFileError."""
    from pydicom.errors import InvalidDicomError

    try:
        yield
    except MemoryError as exc:
        raise CorruptFileError(f"{failure} (out of memory: a length in the file is corrupt)", where) from exc
    except (InvalidDicomError, *_PYDICOM_ERRORS) as exc:
        raise CorruptFileError(f"{failure} ({type(exc).__name__}: {exc})", where) from exc


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
        CorruptFileError: not a DICOM file, a value or the pixel data cannot be decoded,
            or the header claims more pixels than the file can hold.
        DicomFormatError: not CT, multi-frame or colour, missing PixelSpacing, non-square
            pixels, or unusable Rows, Columns or rescale values.
        NonFiniteDataError: the rescaled pixels hold NaN or inf.
    """
    import pydicom

    p = existing_file(path)
    where = str(p)
    # Parse from memory: a corrupt element length then reads at most the file's bytes,
    # where reading from the file object would first allocate whatever the length claims.
    raw = p.read_bytes()
    with _decoding(where, "cannot be read as a DICOM image"):
        ds = pydicom.dcmread(io.BytesIO(raw))
        modality = ds.get("Modality", "")
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        spacing = ds.get("PixelSpacing")
        spacing = None if spacing is None else [float(v) for v in spacing]
        slope = float(ds.get("RescaleSlope", 1.0))
        intercept = float(ds.get("RescaleIntercept", 0.0))
    if modality != "CT":
        raise DicomFormatError(
            f"Modality is {modality!r}, expected 'CT'; only CT slices carry Hounsfield units",
            where,
        )
    if frames != 1 or samples != 1:
        raise DicomFormatError(
            f"the file holds {frames} frames of {samples} samples per pixel, expected one greyscale "
            "slice (rows, cols); split multi-frame files first",
            where,
        )
    # Decoded pixels cannot outgrow the file by more than the best compression ratio; a
    # larger Rows x Columns x BitsAllocated is a corrupt header, refused before decoding.
    needed = rows * cols * max(bits, 8) // 8
    if needed > _MAX_DECODE_RATIO * len(raw):
        raise CorruptFileError(
            f"Rows {rows} x Columns {cols} x {bits} bits need {needed} bytes, out of proportion with the "
            f"{len(raw)}-byte file; the header is corrupt",
            where,
        )
    if spacing is None or len(spacing) != 2:
        raise DicomFormatError("PixelSpacing (0028,0030) is missing; pixel size is required", where)
    row_mm, col_mm = spacing
    if not (math.isfinite(row_mm) and math.isfinite(col_mm)) or abs(row_mm - col_mm) > 1e-3 * max(row_mm, col_mm):
        raise DicomFormatError(
            f"PixelSpacing is {row_mm} x {col_mm} mm; square pixels are required (resample first)",
            where,
        )
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise DicomFormatError(f"RescaleSlope {slope} / RescaleIntercept {intercept} are not finite", where)
    with _decoding(where, "pixel data cannot be decoded"):
        pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    if pixels.shape != (rows, cols):
        raise DicomFormatError(
            f"pixel data has shape {pixels.shape}, expected one slice (rows, cols) = {(rows, cols)}",
            where,
        )
    try:
        grid = ImageGrid((rows, cols), col_mm)
    except GeometryError as exc:
        raise DicomFormatError(f"Rows, Columns or PixelSpacing are unusable: {exc}", where) from exc
    hu = pixels * slope + intercept
    check_finite(hu, "pixel data", where)
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    return AttenuationImage(
        mu=hu_to_attenuation(hu),
        grid=grid,
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
