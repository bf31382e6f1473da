"""The smallest CT data set the de-identification tests start from: class, instance, patient id, modality."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage


def minimal_ct(n: int) -> Dataset:
    """A CT data set of synthetic patient ``ID-ZQX-<n>`` with instance UID ``1.2.999.999.<n>.1``."""
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = f"1.2.999.999.{n}.1"
    ds.PatientID = f"ID-ZQX-{n}"
    ds.Modality = "CT"
    return ds
