"""Exceptions of the raw-data library.

Every error raised on purpose by :mod:`raw_data` derives from :class:`RawDataError` and
from the builtin it refines, so callers may catch either. Errors about a file carry the
file in ``path`` and name it in the message, together with what was found, what was
expected, and how to fix it.
"""

from __future__ import annotations

from os import PathLike


class RawDataError(Exception):
    """Root of every error raised by :mod:`raw_data`.

    Attributes:
        path: the file the problem was found in, or ``None`` for in-memory data.
    """

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        self.path = None if path is None else str(path)
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(where + message)


class GeometryError(RawDataError, ValueError):
    """A CT geometry is invalid, or unsuitable for the requested operation."""


class ProfileNotFoundError(RawDataError, LookupError):
    """No scanner profile has the requested name."""


class PhantomError(RawDataError, ValueError):
    """A phantom or lesion description is invalid."""


class DataShapeError(RawDataError, ValueError):
    """An array (in memory or in a file) has the wrong rank, shape or type."""


class NonFiniteDataError(RawDataError, ValueError):
    """An array holds NaN or infinite values."""


class MissingFileError(RawDataError, FileNotFoundError):
    """The file to read does not exist."""


class CorruptFileError(RawDataError, OSError):
    """The file cannot be read as HDF5 or DICOM: truncated, corrupt, or another format."""


class FileFormatError(RawDataError, ValueError):
    """The file is readable but its content is not what the reader expects."""


class SinogramFormatError(FileFormatError):
    """The file is not a MeTAI CT sinogram, or is one of an unsupported version."""


class IsmrmrdFormatError(FileFormatError):
    """The file is not ISMRMRD, or holds data this reader does not support (not 2D Cartesian)."""


class DicomFormatError(FileFormatError):
    """The DICOM file is not a CT image slice this library can turn into attenuation."""


class MissingFieldError(FileFormatError):
    """A required dataset, group, attribute or header field is absent."""


class HeaderMismatchError(FileFormatError):
    """The header (geometry, encoding) disagrees with the data it describes."""
