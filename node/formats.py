"""Recognise, validate and de-identify the objects a node ingests.

Three formats: DICOM (any transfer syntax pydicom can decode), ISMRMRD HDF5 (MRI raw data)
and the MeTAI CT sinogram HDF5 layout. :func:`parse` validates an object and finds its local
patient id; :func:`deidentify` returns the bytes to store, de-identified for that patient.
"""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from contracts.datause import Kind
from node.deid import DeidPolicy, PatientContext, UidMapper
from node.deid import deidentify as deidentify_dicom
from node.errors import IngestError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
SINOGRAM_FORMAT = "metai-ct-sinogram"
#: Where a sinogram names its patient (the hospital's local id), removed on ingest.
SINOGRAM_PATIENT_KEY = "patient_id"
_DICOM_READ_ERRORS = (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, AttributeError,
                      struct.error, NotImplementedError, RuntimeError, OSError, zlib.error)


@dataclass
class Parsed:
    """An object recognised and validated, before de-identification."""

    format: str  # dicom | ismrmrd | metai-ct-sinogram
    kind: Kind
    modality: str
    local_patient_id: str | None
    synthetic: bool
    payload: Any  # the parsed dataset (DICOM) or the source path (HDF5)


@dataclass(frozen=True)
class Processed:
    """De-identified content ready for the store."""

    content: bytes
    suffix: str
    study_uid: str | None = None
    series_uid: str | None = None
    flags: tuple[str, ...] = ()


def parse(path: Path, content: bytes) -> Parsed:
    """Recognise and validate ``content`` (read from ``path``).

    Raises:
        IngestError: empty, unrecognised, truncated or undecodable; the message is the reason.
    """
    if not content:
        raise IngestError("empty file (0 bytes)")
    if content.startswith(HDF5_SIGNATURE):
        return _parse_hdf5(path)
    return _parse_dicom(content)


def deidentify(
    parsed: Parsed, patient: PatientContext, uids: UidMapper, policy: DeidPolicy, tmp_dir: Path
) -> Processed:
    """De-identify ``parsed`` for ``patient``; return the bytes to store."""
    if parsed.format == "dicom":
        result = deidentify_dicom(parsed.payload, patient, uids, policy, in_place=True)
        buf = io.BytesIO()
        result.dataset.save_as(buf, enforce_file_format=True)
        return Processed(
            content=buf.getvalue(),
            suffix=".dcm",
            study_uid=str(result.dataset.get("StudyInstanceUID", "")) or None,
            series_uid=str(result.dataset.get("SeriesInstanceUID", "")) or None,
            flags=tuple(result.flags),
        )
    # Raw files are rebuilt in memory from their allow-lists: ``tmp_dir`` is not used. Imported here,
    # like the readers in parse, so that importing this module does not load torch and ismrmrd.
    from node.raw_deid import deidentify_raw

    raw = deidentify_raw(parsed.format, parsed.payload, patient, uids)
    return Processed(content=raw.content, suffix=".h5", study_uid=raw.study_uid, flags=raw.flags)


# ---------------------------------------------------------------------- DICOM


def _parse_dicom(content: bytes) -> Parsed:
    ds: pydicom.Dataset
    try:
        ds = pydicom.dcmread(io.BytesIO(content))
    except InvalidDicomError:
        ds = _parse_headerless_dicom(content)
    except _DICOM_READ_ERRORS as exc:
        raise IngestError(
            f"DICOM cannot be parsed ({type(exc).__name__}: {exc}); the file is truncated or damaged"
        ) from exc
    if ds.get("SOPClassUID") == pydicom.uid.MediaStorageDirectoryStorage:
        raise IngestError("a DICOMDIR index, not an image: ingest the image files it lists")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = ds.get("SOPClassUID")
        raise IngestError(f"DICOM without pixel data (SOP class {getattr(sop, 'name', sop)}): not an image")
    try:
        pixels = ds.pixel_array
    except _DICOM_READ_ERRORS as exc:
        ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        name = getattr(ts, "name", ts) or "unknown transfer syntax"
        raise IngestError(f"pixel data cannot be decoded ({name}): {exc}") from exc
    if not np.all(np.isfinite(pixels)) if pixels.dtype.kind == "f" else False:
        raise IngestError("pixel data hold NaN or infinite values")
    local_id = str(ds.get("PatientID", "") or "").strip() or None
    return Parsed("dicom", Kind.IMAGE, str(ds.get("Modality", "OT") or "OT"), local_id, False, ds)


def _parse_headerless_dicom(content: bytes) -> pydicom.Dataset:
    # Some valid files lack the 128-byte preamble; accept them only if they look like DICOM.
    try:
        ds = pydicom.dcmread(io.BytesIO(content), force=True)
        if "SOPClassUID" in ds and ("PixelData" in ds or "Modality" in ds):
            return ds
    except _DICOM_READ_ERRORS:
        pass
    raise IngestError("neither DICOM (no DICM preamble, no DICOM header) nor HDF5: not a supported file")


# ---------------------------------------------------------------------- HDF5


def _parse_hdf5(path: Path) -> Parsed:
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if fmt == SINOGRAM_FORMAT:
                return _parse_sinogram(path, f)
            xml = _ismrmrd_xml(f)
    except OSError as exc:
        raise IngestError(f"HDF5 cannot be read ({exc}); the file is truncated or corrupt") from exc
    if xml is None:
        raise IngestError(
            "HDF5 but neither an ISMRMRD dataset (no /dataset/xml) nor a MeTAI sinogram (format attribute)"
        )
    return _parse_ismrmrd(path, xml)


def _parse_sinogram(path: Path, f: Any) -> Parsed:
    from raw_data.errors import RawDataError
    from raw_data.sinogram_io import read_sinogram

    try:
        sinogram = read_sinogram(path)
    except RawDataError as exc:
        raise IngestError(f"invalid CT sinogram file: {exc}") from exc
    provenance = dict(sinogram.provenance)
    local_id = provenance.get(SINOGRAM_PATIENT_KEY, "").strip() or None
    synthetic = provenance.get("synthetic", "").lower() in ("1", "true", "yes")
    return Parsed(SINOGRAM_FORMAT, Kind.CT_SINOGRAM, "CT", local_id, synthetic, path)


def _ismrmrd_xml(f: Any) -> str | None:
    if "dataset" in f and "xml" in f["dataset"]:
        raw = f["dataset"]["xml"][0]
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    return None


def _parse_ismrmrd(path: Path, xml: str) -> Parsed:
    from raw_data.errors import RawDataError
    from raw_data.ismrmrd_io import read_ismrmrd

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise IngestError(f"ISMRMRD header is not valid XML: {exc}") from exc
    try:
        read_ismrmrd(path)
    except RawDataError as exc:
        raise IngestError(f"invalid ISMRMRD dataset: {exc}") from exc
    local_id = _xml_text(root, "subjectInformation", "patientID")
    return Parsed("ismrmrd", Kind.MR_KSPACE, "MR", local_id, False, path)


def _xml_text(root: ET.Element, *names: str) -> str | None:
    node: ET.Element | None = root
    for name in names:
        node = None if node is None else node.find(f"{{{ISMRMRD_NS}}}{name}")
    text = node.text.strip() if node is not None and node.text else ""
    return text or None
