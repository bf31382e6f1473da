"""The ISMRMRD XML header: parsed with ismrmrd's schema binding, then checked for what the
reader needs (a 2D Cartesian encoding of sane size, positive fields of view, an acceleration
and calibration mode)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import ismrmrd.xsd
from xsdata.exceptions import ConverterError, ConverterWarning, ParserError  # ismrmrd's XML binding

from raw_data.errors import IsmrmrdFormatError, MissingFieldError

__all__ = ["Encoding", "parse_header"]

# number_of_samples and kspace_encode_step_1 are 16-bit in every acquisition header.
_MAX_MATRIX = 1 << 16


@dataclass(frozen=True)
class Encoding:
    """What the reader takes from the header of a 2D Cartesian ISMRMRD dataset.

    Attributes:
        lines, readout: encoded matrix (phase encodes, readout samples).
        rows, cols: recon matrix.
        fov_mm: recon field of view ``(phase, readout)``, mm.
        centre_line: the k-space centre line (``encodingLimits.kspace_encoding_step_1.center``).
        acceleration: nominal acceleration along phase encoding (1 without parallel imaging).
        calibration_mode: ``"embedded"``, ``"interleaved"``, ... or ``""`` when absent.
        receiver_channels: coil count the header announces, if any.
        parameters: user string parameters, ``metai.`` prefix removed.
    """

    lines: int
    readout: int
    rows: int
    cols: int
    fov_mm: tuple[float, float]
    centre_line: int
    acceleration: int
    calibration_mode: str
    receiver_channels: int | None
    parameters: dict[str, str]


def _document(xml: bytes | str, path: str) -> Any:
    try:
        with warnings.catch_warnings():
            # A value of the wrong type (a matrix size "abc") is only a warning to xsdata.
            warnings.simplefilter("error", ConverterWarning)
            return ismrmrd.xsd.CreateFromDocument(xml)
    except TypeError as exc:  # xsdata reports a missing required element this way
        raise MissingFieldError(f"XML header lacks a required element ({exc})", path) from exc
    except (ParserError, ConverterError, ConverterWarning, ValueError, SyntaxError, KeyError) as exc:
        # SyntaxError: xml.etree's ParseError; ValueError includes undecodable bytes.
        raise IsmrmrdFormatError(f"XML header does not parse as ISMRMRD ({exc})", path) from exc


def _size(value: Any, what: str, path: str, upper: int = _MAX_MATRIX) -> int:
    if not isinstance(value, int) or not 1 <= value <= upper:
        raise IsmrmrdFormatError(f"{what} is {value!r}, expected an integer from 1 to {upper}", path)
    return value


def _length(value: Any, what: str, path: str) -> float:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise IsmrmrdFormatError(f"{what} is {value!r}, expected a positive length in mm", path)
    return float(value)


def parse_header(xml: bytes | str, path: str) -> Encoding:
    """Parse and check an ISMRMRD XML header.

    Raises:
        MissingFieldError: a required element is absent.
        IsmrmrdFormatError: it does not parse, or does not describe 2D Cartesian data of a
            size this reader can hold.
    """
    header = _document(xml, path)
    if not header.encoding:
        raise MissingFieldError("XML header has no <encoding>; it is required", path)
    enc = header.encoding[0]
    if enc.trajectory != ismrmrd.xsd.trajectoryType.CARTESIAN:
        trajectory = getattr(enc.trajectory, "value", enc.trajectory)
        raise IsmrmrdFormatError(f"trajectory is {trajectory!r}; this reader handles Cartesian only", path)
    encoded, recon = enc.encodedSpace.matrixSize, enc.reconSpace.matrixSize
    if encoded.z != 1:
        raise IsmrmrdFormatError(f"encoded matrix z is {encoded.z}; only 2D (z = 1) is supported", path)
    lines = _size(encoded.y, "encoded matrix y (phase encodes)", path)
    readout = _size(encoded.x, "encoded matrix x (readout)", path)
    rows = _size(recon.y, "recon matrix y", path)
    cols = _size(recon.x, "recon matrix x", path)
    fov = enc.reconSpace.fieldOfView_mm
    fov_mm = (_length(fov.y, "recon field of view y", path), _length(fov.x, "recon field of view x", path))
    limits = enc.encodingLimits.kspace_encoding_step_1 if enc.encodingLimits is not None else None
    centre = lines // 2 if limits is None or limits.center is None else limits.center
    if not isinstance(centre, int):
        # Its range is checked against the acquisitions' line numbers, which it shifts.
        raise IsmrmrdFormatError(f"k-space centre line is {centre!r}, expected an integer", path)
    pi = enc.parallelImaging
    acceleration, mode = 1, ""
    if pi is not None:
        acceleration = _size(pi.accelerationFactor.kspace_encoding_step_1, "acceleration factor", path, lines)
        if pi.calibrationMode is not None:
            mode = str(getattr(pi.calibrationMode, "value", pi.calibrationMode))
    system = header.acquisitionSystemInformation
    channels = None if system is None else system.receiverChannels
    if channels is not None and not (isinstance(channels, int) and channels >= 1):
        raise IsmrmrdFormatError(f"receiverChannels is {channels!r}, expected a positive integer", path)
    params: dict[str, str] = {}
    if header.userParameters is not None:
        for p in header.userParameters.userParameterString:
            params[str(p.name).removeprefix("metai.")] = str(p.value)
    return Encoding(lines, readout, rows, cols, fov_mm, centre, acceleration, mode, channels, params)
