"""The smallest CT data set the de-identification tests start from: class, instance, patient id, modality."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ImplicitVRLittleEndian


def minimal_ct(n: int) -> Dataset:
    """A CT data set of synthetic patient ``ID-ZQX-<n>`` with instance UID ``1.2.999.999.<n>.1``."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"1.2.999.999.{n}.1"
    ds.PatientID = f"ID-ZQX-{n}"
    ds.Modality = "CT"
    return ds


def implicit_vr_file(n: int, *elements: DataElement) -> Dataset:
    """:func:`minimal_ct` with ``elements``, written as an implicit-VR file and read back as the node reads it.

    The file holds no VRs, only each element's bytes: the reader takes the VR from the dictionary.
    """
    ds = minimal_ct(n)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for element in elements:
        ds.add(element)
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))
