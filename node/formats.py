"""Recognise, validate and de-identify the objects a node ingests.

Three formats: DICOM (any transfer syntax pydicom can decode), ISMRMRD HDF5 (MRI raw data)
and the MeTAI CT sinogram HDF5 layout. :func:`parse` validates an object and finds its local
patient id; :func:`deidentify` returns the bytes to store, de-identified for that patient.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import DecodeRunner

from contracts.datause import Kind
from node.deid import DeidPolicy, PatientContext, UidMapper
from node.deid import deidentify as deidentify_dicom
from node.deid_profile import MODALITIES
from node.dicom_file import encode_file
from node.errors import IngestError
from node.pixel_stream import strip_pixel_stream
from node.redact import describe, value_free
from node.redact_view import decoded_view
from raw_data.formats import DICOM_FORMAT, ISMRMRD_FORMAT, SINOGRAM_FORMAT

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
#: Where a sinogram names its patient (the hospital's local id), removed on ingest.
SINOGRAM_PATIENT_KEY = "patient_id"


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

    Any failure of the libraries reading the file becomes an :class:`IngestError` whose
    message states the exception class and carries no value taken from the file
    (:func:`node.redact.describe`).

    Raises:
        IngestError: empty, unrecognised, truncated or undecodable; the message is the reason.
    """
    if not content:
        raise IngestError("empty file (0 bytes)")
    if content.startswith(HDF5_SIGNATURE):
        return _parse_hdf5(path, content)
    return _parse_dicom(content)


def deidentify(parsed: Parsed, patient: PatientContext, uids: UidMapper, policy: DeidPolicy) -> Processed:
    """De-identify ``parsed`` for ``patient``; return the bytes to store."""
    if parsed.format == DICOM_FORMAT:
        result = deidentify_dicom(parsed.payload, patient, uids, policy, in_place=True)
        result = strip_pixel_stream(result)  # text hidden in the pixel data stream (issue 9)
        return Processed(
            content=encode_file(result.dataset),
            suffix=".dcm",
            study_uid=str(result.dataset.get("StudyInstanceUID", "")) or None,
            series_uid=str(result.dataset.get("SeriesInstanceUID", "")) or None,
            flags=tuple(result.flags),
        )
    # Raw files are rebuilt in memory from their allow-lists (nothing is written on the way). Imported
    # here, like the readers in parse, so that importing this module does not load torch and ismrmrd.
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
    except Exception as exc:  # a damaged file can make the reader fail in any way
        raise IngestError(
            f"DICOM cannot be parsed ({describe(exc, decoded_view(content))}); the file is truncated or damaged"
        ) from exc
    try:
        return _check_dicom(ds, content)
    except IngestError:
        raise
    except Exception as exc:  # values are converted lazily, so damage shows only here
        reason = describe(exc, decoded_view(content))
        raise IngestError(f"DICOM cannot be read ({reason}); the file is damaged") from exc


def _check_dicom(ds: pydicom.Dataset, content: bytes) -> Parsed:
    if ds.get("SOPClassUID") == pydicom.uid.MediaStorageDirectoryStorage:
        raise IngestError("a DICOMDIR index, not an image: ingest the image files it lists")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise IngestError(f"DICOM without pixel data (SOP class {_uid_name(ds.get('SOPClassUID'), content)}): "
                          "not an image")
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        if "PixelData" in ds and isinstance(ts, pydicom.uid.UID) and ts.is_transfer_syntax and not ts.is_compressed:
            # Native integer pixels: decoding only reshapes the buffer once pydicom's decoder has
            # checked the pixel description against it, so that check is the whole validation
            # (and takes a quarter of the time of building the array).
            runner = DecodeRunner(ts)
            runner.set_source(ds)
            runner.validate()
        else:
            pixels = ds.pixel_array
            if pixels.dtype.kind == "f" and not np.all(np.isfinite(pixels)):
                raise IngestError("pixel data hold NaN or infinite values")
    except IngestError:
        raise
    except Exception as exc:  # every decoder has its own errors
        name = _uid_name(ts, content) if ts else "unknown transfer syntax"
        raise IngestError(f"pixel data cannot be decoded ({name}): {describe(exc, decoded_view(content))}") from exc
    local_id = str(ds.get("PatientID", "") or "").strip() or None
    return Parsed(DICOM_FORMAT, Kind.IMAGE, _modality(ds), local_id, False, ds)


def _modality(ds: pydicom.Dataset) -> str:
    """The catalog's modality: the file's if it is one of the standard's defined terms, else OT.

    The catalog is written from the parsed file, before de-identification, and a dataset's modality
    goes on chain, so only a value from the standard's list may reach them (a code string can spell
    a name).
    """
    value = str(ds.get("Modality", "") or "").strip()
    return value if value in MODALITIES else "OT"


def _uid_name(uid: Any, content: bytes) -> str:
    """The dictionary name of a well-known UID; any other value only without what the file holds."""
    if isinstance(uid, pydicom.uid.UID) and uid.name != str(uid):
        return uid.name  # from pydicom's UID dictionary, not from the file
    return value_free(str(uid), decoded_view(content))


def _parse_headerless_dicom(content: bytes) -> pydicom.Dataset:
    # Some valid files lack the 128-byte preamble; accept them only if they look like DICOM.
    try:
        ds = pydicom.dcmread(io.BytesIO(content), force=True)
        if "SOPClassUID" in ds and ("PixelData" in ds or "Modality" in ds):
            return ds
    except Exception:  # not DICOM after all: said below
        pass
    raise IngestError("neither DICOM (no DICM preamble, no DICOM header) nor HDF5: not a supported file")


# ---------------------------------------------------------------------- HDF5


def _parse_hdf5(path: Path, content: bytes) -> Parsed:
    try:
        with h5py.File(path, "r") as f:
            fmt = f.attrs.get("format")
            fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
            if fmt == SINOGRAM_FORMAT:
                return _parse_sinogram(path, content)
            xml = _ismrmrd_xml(f)
    except IngestError:
        raise
    except Exception as exc:  # h5py raises OSError, RuntimeError, KeyError, ... on damage
        raise IngestError(
            f"HDF5 cannot be read ({describe(exc, decoded_view(content, path))}); the file is truncated or corrupt"
        ) from exc
    if xml is None:
        raise IngestError(
            "HDF5 but neither an ISMRMRD dataset (no /dataset/xml) nor a MeTAI sinogram (format attribute)"
        )
    return _parse_ismrmrd(path, xml, content)


def _parse_sinogram(path: Path, content: bytes) -> Parsed:
    from raw_data.sinogram_io import read_sinogram

    try:
        sinogram = read_sinogram(path)
    except Exception as exc:  # the reader's documented errors and any other
        raise IngestError(f"invalid CT sinogram file ({describe(exc, decoded_view(content, path))})") from exc
    provenance = dict(sinogram.provenance)
    local_id = str(provenance.get(SINOGRAM_PATIENT_KEY, "")).strip() or None
    synthetic = str(provenance.get("synthetic", "")).lower() in ("1", "true", "yes")
    return Parsed(SINOGRAM_FORMAT, Kind.CT_SINOGRAM, "CT", local_id, synthetic, path)


def _ismrmrd_xml(f: Any) -> str | None:
    """The ISMRMRD header, read without following a link or a storage outside the file."""
    from node.raw_deid.h5 import local_object, local_values

    dset = local_object(f, "dataset/xml")
    if not isinstance(dset, h5py.Dataset) or dset.shape == (0,):
        return None
    raw = local_values(dset, "/dataset/xml", () if dset.shape == () else 0)
    return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)


def _parse_ismrmrd(path: Path, xml: str, content: bytes) -> Parsed:
    from raw_data.ismrmrd_io import read_ismrmrd

    try:
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise IngestError(
            f"ISMRMRD header is not valid XML ({describe(exc, decoded_view(content, path))})"
        ) from exc
    try:
        read_ismrmrd(path)
    except Exception as exc:  # the reader's documented errors and any other
        raise IngestError(f"invalid ISMRMRD dataset ({describe(exc, decoded_view(content, path))})") from exc
    local_id = _xml_text(root, "subjectInformation", "patientID")
    return Parsed(ISMRMRD_FORMAT, Kind.MR_KSPACE, "MR", local_id, False, path)


def _xml_text(root: ET.Element, *names: str) -> str | None:
    node: ET.Element | None = root
    for name in names:
        node = None if node is None else node.find(f"{{{ISMRMRD_NS}}}{name}")
    text = node.text.strip() if node is not None and node.text else ""
    return text or None
