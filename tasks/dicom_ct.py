"""Read and write single CT slices as DICOM CT Image Storage objects, in Hounsfield units.

The writer makes a minimal but complete CT Image (Patient, General Study, General Series,
Frame of Reference, General Equipment, General Image, Image Plane, Image Pixel, CT Image and
SOP Common modules) for synthetic data: 16-bit unsigned pixels, ``HU = stored - 1024``, and
an obviously fake patient. The reader accepts any single-frame CT slice pydicom decodes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from tasks.errors import TaskDataError

__all__ = ["CtSlice", "read_ct_image", "write_ct_image"]

_INTERCEPT = -1024.0
_STORED_MAX = 4095  # 12 bits stored: -1024 ... 3071 HU
_STUDY_DATE = "20000101"  # synthetic data carry a fixed, obviously artificial date


@dataclass(frozen=True, eq=False)
class CtSlice:
    """One CT slice.

    Attributes:
        hu: Hounsfield units, float64 ``(rows, cols)``, rows top to bottom.
        pixel_size_mm: side of a square pixel, mm.
    """

    hu: npt.NDArray[np.float64]
    pixel_size_mm: float


def write_ct_image(
    target: str | os.PathLike[str] | BinaryIO,
    hu: npt.ArrayLike,
    pixel_size_mm: float,
    *,
    patient_id: str,
    uid_source: str,
    description: str = "synthetic phantom",
) -> None:
    """Write a CT slice in Hounsfield units as a DICOM CT Image Storage file.

    Parameters:
        target: file path or writable binary stream.
        hu: Hounsfield units ``(rows, cols)``; values are rounded and clipped to -1024..3071.
        pixel_size_mm: square pixel side, mm (PixelSpacing).
        patient_id: PatientID (synthetic, e.g. ``"TEST-P0001"``); PatientName is derived.
        uid_source: text the UIDs are derived from, so the same source gives the same UIDs.
        description: SeriesDescription and ImageComments.
    """
    # pydicom is imported here and in read_ct_image: processes that never touch a DICOM slice (every
    # round of the sinogram and k-space tasks) do not load it.
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    values = np.asarray(hu, dtype=np.float64)
    stored = np.clip(np.rint(values - _INTERCEPT), 0, _STORED_MAX).astype(np.uint16)
    study_uid = generate_uid(entropy_srcs=[uid_source, "study"])
    series_uid = generate_uid(entropy_srcs=[uid_source, "series"])
    sop_uid = generate_uid(entropy_srcs=[uid_source, "instance"])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian

    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.SpecificCharacterSet = "ISO_IR 100"
    # Patient
    ds.PatientName = f"SYNTHETIC^{patient_id}"
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = _STUDY_DATE
    ds.StudyTime = "000000"
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    # General Series
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = description
    # Frame of Reference
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[uid_source, "frame"])
    ds.PositionReferenceIndicator = ""
    # General Equipment
    ds.Manufacturer = "MeTAI exchange (synthetic)"
    # General Image
    ds.InstanceNumber = 1
    ds.ImageComments = description
    ds.BurnedInAnnotation = "NO"
    # Image Plane: an axial slice centred on the isocentre.
    rows, cols = stored.shape
    ds.PixelSpacing = [pixel_size_mm, pixel_size_mm]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-(cols // 2) * pixel_size_mm, -(rows // 2) * pixel_size_mm, 0.0]
    ds.SliceThickness = 5.0
    # Image Pixel
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = stored.astype("<u2").tobytes()
    # CT Image
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.RescaleIntercept = _INTERCEPT
    ds.RescaleSlope = 1.0
    ds.RescaleType = "HU"
    ds.KVP = 120.0
    ds.AcquisitionNumber = 1
    ds.WindowCenter = 40.0
    ds.WindowWidth = 80.0
    pydicom.dcmwrite(target, ds, enforce_file_format=True)


def read_ct_image(source: str | os.PathLike[str] | BinaryIO, where: str) -> CtSlice:
    """Read one DICOM CT slice as Hounsfield units (RescaleSlope and RescaleIntercept applied).

    Parameters:
        source: file path or readable binary stream.
        where: how to name the source in messages (usually its path).

    Returns:
        The slice in HU with its pixel size.

    Raises:
        TaskDataError: not DICOM, undecodable pixels, not CT, multi-frame or colour, missing
            or non-square PixelSpacing, or non-finite values.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(source)
        pixels = np.asarray(ds.pixel_array, dtype=np.float64)
    except (InvalidDicomError, AttributeError, ValueError, TypeError, KeyError, EOFError, OSError) as exc:
        raise TaskDataError(f"{where}: cannot be read as a DICOM image ({type(exc).__name__}: {exc})") from exc
    modality = str(ds.get("Modality", ""))
    if modality != "CT":
        raise TaskDataError(f"{where}: Modality is {modality!r}, expected 'CT'; only CT slices carry Hounsfield units")
    if pixels.ndim != 2:
        raise TaskDataError(
            f"{where}: pixel data have shape {pixels.shape}, expected one grey-scale slice (rows, cols); "
            "split multi-frame files first"
        )
    spacing = ds.get("PixelSpacing")
    if spacing is None or len(spacing) != 2:
        raise TaskDataError(f"{where}: PixelSpacing (0028,0030) is missing; the pixel size is required")
    row_mm, col_mm = float(spacing[0]), float(spacing[1])
    if not (row_mm > 0 and col_mm > 0) or abs(row_mm - col_mm) > 1e-3 * max(row_mm, col_mm):
        raise TaskDataError(f"{where}: PixelSpacing is {row_mm} x {col_mm} mm; square pixels are required")
    hu = pixels * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
    if not np.isfinite(hu).all():
        raise TaskDataError(f"{where}: pixel data hold NaN or infinite values")
    return CtSlice(hu, col_mm)
