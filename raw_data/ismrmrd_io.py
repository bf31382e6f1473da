"""Read and write 2D Cartesian MRI k-space as ISMRMRD HDF5, with the ``ismrmrd`` package.

The writer produces what ISMRMRD tools expect: an XML header with encoded and recon
spaces, encoding limits and the parallel-imaging description, then one acquisition per
phase-encoding line carrying its coil data, encode-step index, centre sample, the
first/last-in-slice flags and, for calibration lines, the parallel-calibration flags. Coil
maps and a reference image, when present, go to the ``csm`` and ``phantom`` arrays, the same
places ``ismrmrd_generate_cartesian_shepp_logan`` uses, so either tool's files read back.

The reader accepts any 2D Cartesian dataset: oversampled or asymmetric readouts, any
number of coils, reversed lines, repeated lines (averaged), missing lines (left at zero).
It skips noise, navigator and other non-imaging acquisitions.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import h5py
import ismrmrd
import ismrmrd.xsd
import numpy as np
import numpy.typing as npt
from xsdata.exceptions import ConverterWarning, ParserError  # ismrmrd's XML binding

from raw_data._files import atomic_target, created_by, existing_file, utc_now
from raw_data.errors import (
    CorruptFileError,
    HeaderMismatchError,
    IsmrmrdFormatError,
    MissingFieldError,
)
from raw_data.kspace import KSpace
from raw_data.sinogram import check_finite

__all__ = ["read_ismrmrd", "write_ismrmrd"]

_SKIPPED_FLAGS = (
    ismrmrd.ACQ_IS_NOISE_MEASUREMENT,
    ismrmrd.ACQ_IS_NAVIGATION_DATA,
    ismrmrd.ACQ_IS_PHASECORR_DATA,
    ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
    ismrmrd.ACQ_IS_DUMMYSCAN_DATA,
    ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
    ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    ismrmrd.ACQ_IS_PHASE_STABILIZATION,
)
_SLICE_THICKNESS_MM = 5.0


def _header(kspace: KSpace) -> str:
    x = ismrmrd.xsd
    lines, readout = kspace.data.shape[1:]
    rows, cols = kspace.recon_shape
    fov_y, fov_x = kspace.fov_mm
    over = readout / cols

    def space(mx: int, my: int, fx: float, fy: float) -> Any:
        return x.encodingSpaceType(
            matrixSize=x.matrixSizeType(x=mx, y=my, z=1),
            fieldOfView_mm=x.fieldOfViewMm(x=fx, y=fy, z=_SLICE_THICKNESS_MM),
        )

    encoding = x.encodingType(
        encodedSpace=space(readout, lines, fov_x * over, fov_y * lines / rows),
        reconSpace=space(cols, rows, fov_x, fov_y),
        encodingLimits=x.encodingLimitsType(
            kspace_encoding_step_1=x.limitType(minimum=0, maximum=lines - 1, center=lines // 2),
            kspace_encoding_step_2=x.limitType(minimum=0, maximum=0, center=0),
            slice=x.limitType(minimum=0, maximum=0, center=0),
            repetition=x.limitType(minimum=0, maximum=0, center=0),
        ),
        trajectory=x.trajectoryType.CARTESIAN,
        parallelImaging=x.parallelImagingType(
            accelerationFactor=x.accelerationFactorType(
                kspace_encoding_step_1=kspace.acceleration, kspace_encoding_step_2=1
            ),
            calibrationMode=x.calibrationModeType.EMBEDDED,
        ),
    )
    provenance = {"created_by": created_by(), "created_at": utc_now(), **kspace.provenance}
    header = x.ismrmrdHeader(
        acquisitionSystemInformation=x.acquisitionSystemInformationType(
            systemVendor="MeTAI exchange",
            systemModel="raw_data virtual MRI",
            receiverChannels=kspace.n_coils,
        ),
        experimentalConditions=x.experimentalConditionsType(H1resonanceFrequency_Hz=63_500_000),
        encoding=[encoding],
        userParameters=x.userParametersType(
            userParameterString=[x.userParameterStringType(name=f"metai.{k}", value=v) for k, v in provenance.items()]
        ),
    )
    return str(x.ToXML(header))


def _acquisition(kspace: KSpace, line: int, counter: int, first: bool, last: bool) -> Any:
    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(kspace.data[:, line, :]))
    acq.version = 1
    acq.scan_counter = counter
    acq.center_sample = kspace.data.shape[2] // 2
    acq.sample_time_us = 5.0
    acq.idx.kspace_encode_step_1 = line
    acq.read_dir[:] = (1.0, 0.0, 0.0)
    acq.phase_dir[:] = (0.0, 1.0, 0.0)
    acq.slice_dir[:] = (0.0, 0.0, 1.0)
    for c in range(kspace.n_coils):
        acq.setChannelActive(c)
    if first:
        for flag in (ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1, ismrmrd.ACQ_FIRST_IN_SLICE, ismrmrd.ACQ_FIRST_IN_REPETITION):
            acq.set_flag(flag)
    if last:
        for flag in (
            ismrmrd.ACQ_LAST_IN_ENCODE_STEP1,
            ismrmrd.ACQ_LAST_IN_SLICE,
            ismrmrd.ACQ_LAST_IN_REPETITION,
            ismrmrd.ACQ_LAST_IN_MEASUREMENT,
        ):
            acq.set_flag(flag)
    if kspace.calibration[line]:
        acq.set_flag(
            ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
            if kspace.imaging[line]
            else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION
        )
    return acq


def write_ismrmrd(path: str | os.PathLike[str], kspace: KSpace, *, dataset: str = "dataset") -> None:
    """Write k-space as an ISMRMRD HDF5 dataset, one acquisition per acquired line.

    The file appears complete or not at all (temporary file, then rename).

    Parameters:
        path: destination ``.h5`` file; an existing file is replaced.
        kspace: the k-space; its coil maps and reference image are stored as the
            ``csm`` and ``phantom`` arrays when present.
        dataset: name of the ISMRMRD group in the file.

    Raises:
        NonFiniteDataError: NaN or inf in the k-space (nothing is written).
        OSError: the directory is not writable or the disk is full.
    """
    check_finite(kspace.data, "k-space", str(path))
    lines = np.nonzero(kspace.sampled)[0]
    with atomic_target(path) as tmp:
        dset = ismrmrd.Dataset(str(tmp), dataset, mode="w")
        try:
            dset.write_xml_header(_header(kspace))
            for n, line in enumerate(lines):
                dset.append_acquisition(_acquisition(kspace, int(line), n, n == 0, n == len(lines) - 1))
            if kspace.coil_maps is not None:
                dset.append_array("csm", kspace.coil_maps)
            if kspace.reference is not None:
                dset.append_array("phantom", kspace.reference)
        finally:
            dset.close()


def _complex(array: npt.NDArray[Any]) -> npt.NDArray[np.complex64]:
    if array.dtype.names and {"real", "imag"} <= set(array.dtype.names):
        return (array["real"] + 1j * array["imag"]).astype(np.complex64)
    return np.asarray(array, dtype=np.complex64)


def _array(raw: npt.NDArray[Any] | None, name: str, shape: tuple[int, ...], path: str) -> Any:
    """Return a stored complex array reshaped to ``shape``, or None if the file has none."""
    if raw is None:
        return None
    values = _complex(raw)
    if values.size != int(np.prod(shape)):
        raise HeaderMismatchError(
            f"array {name} has shape {values.shape}, expected {shape} for the recon matrix and coil count of this file",
            path,
        )
    return values.reshape(shape)


def _encoding(xml: bytes | str, path: str) -> tuple[Any, Any, dict[str, str]]:
    try:
        with warnings.catch_warnings():
            # A value of the wrong type (a matrix size "abc") is only a warning to xsdata.
            warnings.simplefilter("error", ConverterWarning)
            header = ismrmrd.xsd.CreateFromDocument(xml)
    except TypeError as exc:  # xsdata reports a missing required element this way
        raise MissingFieldError(f"XML header lacks a required element ({exc})", path) from exc
    except (ParserError, ConverterWarning, ValueError) as exc:
        raise IsmrmrdFormatError(f"XML header does not parse as ISMRMRD ({exc})", path) from exc
    if not header.encoding:
        raise MissingFieldError("XML header has no <encoding>; it is required", path)
    enc = header.encoding[0]
    if enc.trajectory != ismrmrd.xsd.trajectoryType.CARTESIAN:
        raise IsmrmrdFormatError(f"trajectory is {enc.trajectory.value!r}; this reader handles Cartesian only", path)
    if enc.encodedSpace.matrixSize.z != 1:
        raise IsmrmrdFormatError(
            f"encoded matrix z is {enc.encodedSpace.matrixSize.z}; only 2D (z = 1) is supported",
            path,
        )
    params: dict[str, str] = {}
    if header.userParameters is not None:
        for p in header.userParameters.userParameterString:
            params[p.name.removeprefix("metai.")] = p.value
    return header, enc, params


def _read_lines(
    dset: Any, enc: Any, coils: int | None, slice_: int, repetition: int, path: str
) -> tuple[npt.NDArray[np.complex64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    lines, readout = enc.encodedSpace.matrixSize.y, enc.encodedSpace.matrixSize.x
    limits = enc.encodingLimits.kspace_encoding_step_1
    shift = lines // 2 - (limits.center if limits is not None else lines // 2)
    total = np.zeros((coils or 1, lines, readout), dtype=np.complex128)
    hits = np.zeros(lines, dtype=int)
    imaging = np.zeros(lines, dtype=bool)
    calibration = np.zeros(lines, dtype=bool)
    for n in range(dset.number_of_acquisitions()):
        acq = dset.read_acquisition(n)
        if any(acq.is_flag_set(f) for f in _SKIPPED_FLAGS) or acq.encoding_space_ref != 0:
            continue
        idx = acq.idx
        if (idx.slice, idx.repetition, idx.contrast, idx.phase, idx.set) != (slice_, repetition, 0, 0, 0):
            continue
        if coils is None:
            coils = acq.active_channels
            total = np.zeros((coils, lines, readout), dtype=np.complex128)
        if acq.active_channels != coils:
            raise HeaderMismatchError(f"acquisition {n} has {acq.active_channels} channels, expected {coils}", path)
        row = idx.kspace_encode_step_1 + shift
        if not 0 <= row < lines:
            raise HeaderMismatchError(
                f"acquisition {n} has kspace_encode_step_1 {idx.kspace_encode_step_1}, outside "
                f"the encoded matrix of {lines} lines",
                path,
            )
        data = acq.data[:, acq.discard_pre : acq.number_of_samples - acq.discard_post]
        check_finite(data, f"acquisition {n}", path)
        if acq.is_flag_set(ismrmrd.ACQ_IS_REVERSE):
            data = data[:, ::-1]
        start = readout // 2 - (acq.center_sample - acq.discard_pre)
        if start < 0 or start + data.shape[1] > readout:
            raise HeaderMismatchError(
                f"acquisition {n} has {data.shape[1]} samples centred at {acq.center_sample}, "
                f"which do not fit the encoded readout of {readout}",
                path,
            )
        total[:, row, start : start + data.shape[1]] += data
        hits[row] += 1
        calib = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
        both = acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
        calibration[row] |= calib or both
        imaging[row] |= not calib
    if not hits.any():
        raise MissingFieldError(f"no imaging acquisitions for slice {slice_}, repetition {repetition}", path)
    total[:, hits > 0] /= hits[hits > 0][None, :, None]  # repeated lines are averaged
    return total.astype(np.complex64), imaging, calibration


def read_ismrmrd(
    path: str | os.PathLike[str],
    *,
    dataset: str = "dataset",
    slice_index: int = 0,
    repetition: int = 0,
) -> KSpace:
    """Read one slice of a 2D Cartesian ISMRMRD dataset as k-space.

    Parameters:
        path: the ISMRMRD ``.h5`` file.
        dataset: name of the ISMRMRD group (``"dataset"`` by convention).
        slice_index: which slice to read (``idx.slice``).
        repetition: which repetition to read (``idx.repetition``).

    Acquisitions of other contrasts, phases or sets, of another encoding space, and noise,
    navigator or other non-imaging acquisitions are skipped.

    Returns:
        k-space ``(coils, phase_encodes, readout)`` on the encoded matrix, with recon shape
        and field of view from the header's recon space, and coil maps (``csm``) and reference
        image (``phantom``) when the file holds them.

    Raises:
        MissingFileError: no such file.
        CorruptFileError: not HDF5, truncated or unreadable.
        MissingFieldError: no such dataset, no XML header, no acquisitions for the slice.
        IsmrmrdFormatError: the header does not parse, or the data are not 2D Cartesian.
        HeaderMismatchError: acquisitions disagree with the header or with each other.
        NonFiniteDataError: NaN or inf samples.
    """
    p = existing_file(path)
    where = str(p)
    try:
        with h5py.File(p, "r") as f:
            if dataset not in f:
                raise MissingFieldError(
                    f"no ISMRMRD group {dataset!r}; groups present: {sorted(f.keys())}; pass dataset=...",
                    where,
                )
            group = f[dataset]
            for name in ("xml", "data"):
                if name not in group:
                    raise MissingFieldError(f"dataset /{dataset}/{name} is missing", where)
            extras = {k: (group[k][()] if k in group else None) for k in ("csm", "phantom")}
        dset = ismrmrd.Dataset(str(p), dataset, mode="r")
        try:
            header, enc, params = _encoding(dset.read_xml_header(), where)
            system = header.acquisitionSystemInformation
            coils = None if system is None else system.receiverChannels
            data, imaging, calibration = _read_lines(dset, enc, coils, slice_index, repetition, where)
        finally:
            dset.close()
    except OSError as exc:
        if isinstance(exc, CorruptFileError | FileNotFoundError):
            raise
        raise CorruptFileError(
            f"cannot be read as HDF5 ({exc}); the file is truncated or corrupt, copy it again",
            where,
        ) from exc
    rows, cols = enc.reconSpace.matrixSize.y, enc.reconSpace.matrixSize.x
    if not (0 < rows <= data.shape[1] and 0 < cols <= data.shape[2]):
        raise HeaderMismatchError(
            f"recon matrix {(rows, cols)} is larger than the encoded matrix {data.shape[1:]}",
            where,
        )
    maps = _array(extras["csm"], "csm", (data.shape[0], rows, cols), where)
    reference = _array(extras["phantom"], "phantom", (rows, cols), where)
    pi = enc.parallelImaging
    return KSpace(
        data=data,
        imaging=imaging,
        calibration=calibration,
        recon_shape=(rows, cols),
        fov_mm=(enc.reconSpace.fieldOfView_mm.y, enc.reconSpace.fieldOfView_mm.x),
        acceleration=1 if pi is None else pi.accelerationFactor.kspace_encoding_step_1,
        coil_maps=maps,
        reference=reference,
        provenance=params,
    )
