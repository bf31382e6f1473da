"""The names of the record formats, defined once for every package.

A node recognises a file and stores its format under one of these names (``node.formats``);
a study's task loads only the formats it lists (``tasks.base.Task.formats``); a MeTAI sinogram
file carries its name in its root ``format`` attribute (:mod:`raw_data.sinogram_io`). This
module imports nothing, so a reader of the names loads no library.
"""

from __future__ import annotations

__all__ = ["DICOM_FORMAT", "ISMRMRD_FORMAT", "RECORD_FORMATS", "SINOGRAM_FORMAT"]

DICOM_FORMAT = "dicom"
"""A DICOM object (an image)."""
ISMRMRD_FORMAT = "ismrmrd"
"""An ISMRMRD HDF5 dataset (MRI k-space)."""
SINOGRAM_FORMAT = "metai-ct-sinogram"
"""A MeTAI CT sinogram (HDF5, :mod:`raw_data.sinogram_io`)."""
RECORD_FORMATS = (DICOM_FORMAT, ISMRMRD_FORMAT, SINOGRAM_FORMAT)
"""Every format a node stores."""
