"""Encode a de-identified DICOM data set as the bytes of a file: pydicom's output, written faster.

pydicom's writer passes every element, changed or not, through the same general routine, and
that per-element work was a third of what a node spends ingesting a small image. Most elements
of a de-identified instance are kept unread (``node.deid``) and are still the raw bytes of the
source; this module writes those bytes with their headers directly and hands every decoded
element, and the file meta group, to pydicom. The output is byte for byte what
``Dataset.save_as(..., enforce_file_format=True)`` writes (``tests/node/test_dicom_file.py``
compares the two over public CT, MR and other files); any case this module does not handle
(another encoding than the source's, a changed character set, deflate, big endian) is written
by pydicom itself.
"""

from __future__ import annotations

import copy
import io
import struct

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import FileDataset, validate_file_meta
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element, write_file_meta_info
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

__all__ = ["encode_file"]

_PIXEL_DATA = 0x7FE00010
_UNDEFINED = 0xFFFFFFFF
_SEQUENCE_DELIMITER = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
_TAG = struct.Struct("<HH")
_SHORT_HEADER = struct.Struct("<HH2sH")  # explicit VR, 16-bit length
_LONG_HEADER = struct.Struct("<HH2sHL")  # explicit VR, reserved, 32-bit length
_IMPLICIT_HEADER = struct.Struct("<HHL")


def encode_file(ds: pydicom.Dataset) -> bytes:
    """Return ``ds`` encoded as a DICOM file (preamble, file meta group, data set).

    Parameters:
        ds: a data set read from a file (it has ``file_meta``), possibly changed since.

    Returns:
        The same bytes as ``ds.save_as(buffer, enforce_file_format=True)``.

    Raises:
        ValueError, TypeError: what pydicom raises for a data set it cannot write.
    """
    tsyntax = ds.file_meta.get("TransferSyntaxUID") if isinstance(ds, FileDataset) else None
    if tsyntax is None or not _fast_path_applies(ds, tsyntax):
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()
    implicit = bool(tsyntax.is_implicit_VR)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    fp.write(ds.preamble or b"\x00" * 128)
    fp.write(b"DICM")
    write_file_meta_info(fp, _file_meta(ds), enforce_standard=True)
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # group lengths are retired, and pydicom does not write them either
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement) and _write_raw(fp, elem, implicit):
            continue
        decoded = ds[tag]
        if tag == _PIXEL_DATA:
            decoded.is_undefined_length = bool(tsyntax.is_compressed)  # as pydicom's writer sets it
        write_data_element(fp, decoded, encodings)
    return bytes(fp.getvalue())


def _fast_path_applies(ds: pydicom.Dataset, tsyntax: pydicom.uid.UID) -> bool:
    """Whether the raw elements keep their encoding: the source's, little endian, not deflated."""
    if not tsyntax.is_transfer_syntax or tsyntax.is_private or tsyntax.is_deflated:
        return False
    if not tsyntax.is_little_endian or ds.original_encoding != (tsyntax.is_implicit_VR, True):
        return False
    if ds.original_character_set != ds._character_set:
        return False  # pydicom re-encodes every text element then
    if any(tag >> 16 in (0, 2) for tag in ds.keys()):  # noqa: SIM118 - iterating a Dataset decodes its elements
        return False  # pydicom refuses these; let it say so
    preamble = getattr(ds, "preamble", None)
    return not preamble or len(preamble) == 128


def _file_meta(ds: pydicom.Dataset) -> pydicom.dataset.FileMetaDataset:
    """The file meta group as pydicom's writer completes it when it enforces the file format."""
    meta = copy.deepcopy(ds.file_meta)
    sop_class, sop_instance = ds.get("SOPClassUID"), ds.get("SOPInstanceUID")
    if meta.get("MediaStorageSOPClassUID") is None or (sop_class and sop_class != meta.MediaStorageSOPClassUID):
        meta.MediaStorageSOPClassUID = sop_class
    if meta.get("MediaStorageSOPInstanceUID") is None or (
        sop_instance and sop_instance != meta.MediaStorageSOPInstanceUID
    ):
        meta.MediaStorageSOPInstanceUID = sop_instance
    validate_file_meta(meta, enforce_standard=True)
    return meta


def _write_raw(fp: DicomBytesIO, elem: RawDataElement, implicit: bool) -> bool:
    """Write an element still as read (header, then its value bytes); False if pydicom must write it.

    Pixel data's length form depends on the transfer syntax and a short-form value over 64 KiB
    changes its VR: those few cases go to pydicom.
    """
    value = elem.value or b""
    undefined = elem.length == _UNDEFINED
    if elem.tag == _PIXEL_DATA or not isinstance(value, bytes):
        return False
    group, element = elem.tag >> 16, elem.tag & 0xFFFF
    length = _UNDEFINED if undefined else len(value)
    if implicit:
        fp.write(_IMPLICIT_HEADER.pack(group, element, length))
    else:
        vr = elem.VR
        if vr is None or len(vr) != 2:
            return False
        if vr in EXPLICIT_VR_LENGTH_32:
            fp.write(_LONG_HEADER.pack(group, element, vr.encode("ascii"), 0, length))
        elif undefined or length > 0xFFFF:
            return False
        else:
            fp.write(_SHORT_HEADER.pack(group, element, vr.encode("ascii"), length))
    fp.write(value)
    if undefined:
        fp.write(_SEQUENCE_DELIMITER)
    return True
