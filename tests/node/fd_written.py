"""A small MR instance holding FD values, written in a chosen byte order and read back, for the deid tests."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian


def fd_written(values: dict[int, object], *, uid: str, patient_id: str, little_endian: bool) -> pydicom.Dataset:
    """Write ``values`` as FD elements in explicit VR of the given byte order and return the file read back."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = uid
    ds.PatientID = patient_id
    ds.Modality = "MR"
    for tag, value in values.items():
        ds.add_new(tag, "FD", value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, little_endian=little_endian, implicit_vr=False, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))
