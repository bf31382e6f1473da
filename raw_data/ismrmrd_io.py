"""Read and write 2D Cartesian MRI k-space as ISMRMRD HDF5, with the ``ismrmrd`` package.

The writer produces what ISMRMRD tools expect: an XML header with encoded and recon
spaces, encoding limits and the parallel-imaging description, then one acquisition per
phase-encoding line carrying its coil data, encode-step index, centre sample, the
first/last-in-slice flags and, for calibration lines, the parallel-calibration flags. Coil
maps and a reference image, when present, go to the ``csm`` and ``phantom`` arrays, the same
places ``ismrmrd_generate_cartesian_shepp_logan`` uses, so either tool's files read back.

The reader accepts any 2D Cartesian dataset: oversampled or asymmetric readouts, any
number of coils, reversed lines, repeated lines (averaged), missing lines (left at zero).
It skips noise, navigator and other non-imaging acquisitions, combines the repetitions of
an interleaved acquisition (``calibrationMode`` ``interleaved``) into one k-space, and says
in the returned :class:`KSpace` which repetitions it read and why. Whatever the bytes of
the file, it returns k-space or raises one of the errors its docstring lists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import h5py
import ismrmrd
import ismrmrd.xsd
import numpy as np
import numpy.typing as npt

from raw_data._acquisitions import Acquisitions, read_acquisitions, read_samples
from raw_data._files import atomic_target, created_by, existing_file, utc_now
from raw_data._hdf5 import Hdf5File, reading
from raw_data._ismrmrd_header import Encoding, parse_header
from raw_data.errors import (
    CorruptFileError,
    HeaderMismatchError,
    IsmrmrdFormatError,
    MissingFieldError,
)
from raw_data.kspace import KSpace
from raw_data.sinogram import check_finite

__all__ = ["read_ismrmrd", "write_ismrmrd"]

# Floor of the k-space memory budget, so that a small file may still describe a large matrix
# of which it samples few lines.
_MIN_KSPACE_BUDGET = 256 << 20
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


def _array(h5: Hdf5File, group: Any, name: str, shape: tuple[int, ...]) -> Any:
    """Return the stored complex array ``name`` reshaped to ``shape``, or None if absent."""
    dset = h5.child(group, name)
    if dset is None:
        return None
    if not isinstance(dset, h5py.Dataset):
        raise IsmrmrdFormatError(f"{group.name}/{name} is not a dataset", h5.where)
    stored, dtype = h5.describe(dset)
    numeric = dtype.kind in "fc" or (dtype.names is not None and {"real", "imag"} <= set(dtype.names))
    if not numeric or int(np.prod(stored, dtype=object)) != int(np.prod(shape)):
        raise HeaderMismatchError(
            f"array {name} has shape {stored} and type {dtype}, expected {shape} complex values for the "
            "recon matrix and coil count of this file",
            h5.where,
        )
    with reading(h5.where, f"array {name}"):
        values = _complex(h5.read(dset))
    return values.reshape(shape)


def _read_xml(h5: Hdf5File, dset: Any) -> bytes | str:
    shape, dtype = h5.describe(dset)
    if len(shape) != 1 or shape[0] < 1 or h5py.check_string_dtype(dtype) is None:
        raise IsmrmrdFormatError(f"{dset.name} has shape {shape} and type {dtype}, expected one string", h5.where)
    if h5py.check_vlen_dtype(dtype) is not None or h5py.check_string_dtype(dtype).length is None:
        records = h5.raw_records(dset)
        lengths = None if records is None else h5.member(dset, records, None)
        if lengths is not None and int(lengths[0]) > h5.size:
            raise CorruptFileError(
                f"{dset.name} claims a {int(lengths[0])}-byte header in a {h5.size}-byte file", h5.where
            )
    xml = h5.read(dset, 0)
    if isinstance(xml, np.ndarray):
        xml = xml.item()
    if not isinstance(xml, bytes | str):
        raise IsmrmrdFormatError(f"{dset.name} holds a {type(xml).__name__}, expected XML text", h5.where)
    return xml


def _repetitions(
    enc: Encoding, present: list[int], requested: int | Sequence[int] | None
) -> tuple[tuple[int, ...], str, int]:
    """Choose the repetitions to read; return them, a sentence saying why, and the acceleration."""
    interleaved = enc.calibration_mode == "interleaved" and enc.acceleration > 1
    others = f"; the file holds repetitions {present}" if len(present) > 1 else ""
    if isinstance(requested, int):
        note = f"repetition {requested} only, as requested{others}"
        if interleaved:
            note += (
                f"; calibrationMode is 'interleaved' with acceleration {enc.acceleration}, so this is one "
                "undersampled pass: pass repetition=None to combine the passes"
            )
        return (requested,), note, enc.acceleration
    if requested is not None:
        chosen = tuple(sorted({int(r) for r in requested}))
        note = f"repetitions {list(chosen)} combined, as requested (lines acquired more than once are averaged)"
        passes = sum(r in present for r in chosen)
        return chosen, note, max(1, enc.acceleration // passes) if interleaved and passes else enc.acceleration
    if interleaved:
        group = tuple(range(enc.acceleration))
        found = [r for r in group if r in present]
        note = (
            f"repetitions 0-{enc.acceleration - 1} combined: the header declares calibrationMode "
            f"'interleaved' with acceleration {enc.acceleration}, so each repetition is one undersampled "
            "pass over different lines of the same k-space"
        )
        if len(found) < len(group):
            note += f"; only repetitions {found} of those passes are in the file, the other lines stay empty"
        if any(r >= enc.acceleration for r in present):
            frames = (max(present) // enc.acceleration) + 1
            note += (
                f"; the file holds {frames} such frames (repetitions {present}), pass "
                f"repetition={tuple(range(enc.acceleration, 2 * enc.acceleration))} for the next"
            )
        return group, note, max(1, enc.acceleration // max(1, len(found)))
    if len(present) > 1:
        mode = f"is {enc.calibration_mode!r}" if enc.calibration_mode else "is not given"
        note = (
            f"repetition 0 of repetitions {present}: calibrationMode {mode}, so each repetition is "
            "a complete acquisition; pass repetition=k to read another or a tuple to average several"
        )
    else:
        note = "repetition 0, the only one in the file"
    return (0,), note, enc.acceleration


def _assemble(
    h5: Hdf5File,
    enc: Encoding,
    table: Acquisitions,
    numbers: npt.NDArray[np.int64],
    samples: list[Any],
    coils: int,
) -> tuple[npt.NDArray[np.complex64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Place each acquisition's samples on its k-space line; average lines acquired twice."""
    path = h5.where
    lines, readout = enc.lines, enc.readout
    shift = lines // 2 - enc.centre_line
    total = np.zeros((coils, lines, readout), dtype=np.complex128)
    hits = np.zeros(lines, dtype=int)
    imaging = np.zeros(lines, dtype=bool)
    calibration = np.zeros(lines, dtype=bool)
    for n, values in zip(numbers.tolist(), samples, strict=True):
        row = int(table.line[n]) + shift
        if not 0 <= row < lines:
            raise HeaderMismatchError(
                f"acquisition {n} has kspace_encode_step_1 {int(table.line[n])}, outside "
                f"the encoded matrix of {lines} lines",
                path,
            )
        pre, post, count = int(table.discard_pre[n]), int(table.discard_post[n]), int(table.samples[n])
        if pre + post > count:
            raise HeaderMismatchError(f"acquisition {n} discards {pre} + {post} of its {count} samples", path)
        data = values[:, pre : count - post]
        check_finite(data, f"acquisition {n}", path)
        if table.has(n, ismrmrd.ACQ_IS_REVERSE):
            data = data[:, ::-1]
        start = readout // 2 - (int(table.center_sample[n]) - pre)
        if start < 0 or start + data.shape[1] > readout:
            raise HeaderMismatchError(
                f"acquisition {n} has {data.shape[1]} samples centred at {int(table.center_sample[n])}, "
                f"which do not fit the encoded readout of {readout}",
                path,
            )
        total[:, row, start : start + data.shape[1]] += data
        hits[row] += 1
        calib = table.has(n, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
        both = table.has(n, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
        calibration[row] |= calib or both
        imaging[row] |= not calib
    total[:, hits > 0] /= hits[hits > 0][None, :, None]  # repeated lines are averaged
    return total.astype(np.complex64), imaging, calibration


def _select(
    h5: Hdf5File, enc: Encoding, table: Acquisitions, slice_index: int, repetition: int | Sequence[int] | None
) -> tuple[npt.NDArray[np.int64], tuple[int, ...], str, int, int]:
    """Return the acquisitions to read, the repetitions, the note, the acceleration and coil count."""
    in_slice = table.imaging & (table.slice == slice_index)
    present = sorted({int(r) for r in table.repetition[in_slice]})
    reps, note, acceleration = _repetitions(enc, present, repetition)
    numbers = np.nonzero(in_slice & np.isin(table.repetition, reps))[0].astype(np.int64)
    if numbers.size == 0:
        raise MissingFieldError(
            f"no imaging acquisitions for slice {slice_index}, repetitions {list(reps)}"
            f" (repetitions in this slice: {present or 'none'})",
            h5.where,
        )
    channels = np.unique(table.channels[numbers])
    coils = int(channels[0])
    if channels.size > 1 or coils < 1:
        n = int(numbers[np.argmax(table.channels[numbers] != coils)]) if channels.size > 1 else int(numbers[0])
        raise HeaderMismatchError(
            f"acquisition {n} has {int(table.channels[n])} channels, expected {coils} like the others"
            if channels.size > 1
            else f"acquisition {n} has {coils} channels, expected at least 1",
            h5.where,
        )
    if enc.receiver_channels is not None and coils != enc.receiver_channels:
        raise HeaderMismatchError(
            f"acquisition {int(numbers[0])} has {coils} channels, expected {enc.receiver_channels}", h5.where
        )
    # k-space is held in complex128 while lines are summed: refuse a header whose matrix
    # would need far more memory than the file's samples can fill.
    needed = coils * enc.lines * enc.readout * 16
    if needed > max(64 * h5.size, _MIN_KSPACE_BUDGET):
        raise HeaderMismatchError(
            f"the header's {enc.lines} x {enc.readout} matrix for {coils} coils needs {needed} bytes, "
            f"out of proportion with the {h5.size}-byte file; the header is corrupt",
            h5.where,
        )
    return numbers, reps, note, acceleration, coils


def read_ismrmrd(
    path: str | os.PathLike[str],
    *,
    dataset: str = "dataset",
    slice_index: int = 0,
    repetition: int | Sequence[int] | None = None,
) -> KSpace:
    """Read one slice of a 2D Cartesian ISMRMRD dataset as k-space.

    Which repetitions are read, and why, is recorded in the result's ``repetitions`` and
    ``read_note``:

    - ``repetition=None`` (default): when the header declares ``calibrationMode``
      ``interleaved`` with acceleration R > 1, repetitions 0 to R-1 are one undersampled
      pass each over different lines of the same k-space (what
      ``ismrmrd_generate_cartesian_shepp_logan -a R`` writes), so they are combined into one
      k-space (acceleration 1 when every pass is present). Otherwise repetition 0 is read.
    - an integer: that repetition alone.
    - a sequence: those repetitions combined; a line acquired in several is averaged.

    Acquisitions of other contrasts, phases or sets, of another encoding space, and noise,
    navigator or other non-imaging acquisitions are skipped.

    Parameters:
        path: the ISMRMRD ``.h5`` file.
        dataset: name of the ISMRMRD group (``"dataset"`` by convention).
        slice_index: which slice to read (``idx.slice``).
        repetition: which repetitions to read (``idx.repetition``), see above.

    Returns:
        k-space ``(coils, phase_encodes, readout)`` on the encoded matrix, with recon shape
        and field of view from the header's recon space, coil maps (``csm``) and reference
        image (``phantom``) when the file holds them, and the repetitions read.

    Raises:
        MissingFileError: no such file.
        CorruptFileError: not HDF5, truncated or unreadable, or a dataset keeps its values in
            other files (external raw storage, a virtual dataset).
        MissingFieldError: no such dataset, no XML header, no acquisitions for the slice.
        IsmrmrdFormatError: the header does not parse, or the data are not 2D Cartesian.
        HeaderMismatchError: acquisitions disagree with the header or with each other.
        NonFiniteDataError: NaN or inf samples or coil maps.
    """
    with Hdf5File(existing_file(path)) as h5:
        where = h5.where
        group = h5.child(h5.root, dataset)
        if not isinstance(group, h5py.Group):
            raise MissingFieldError(
                f"no ISMRMRD group {dataset!r}; groups present: {sorted(h5.names(h5.root))}; pass dataset=...",
                where,
            )
        found = {name: h5.child(group, name) for name in ("xml", "data")}
        for name, dset in found.items():
            if not isinstance(dset, h5py.Dataset):
                raise MissingFieldError(f"dataset /{dataset}/{name} is missing", where)
        enc = parse_header(_read_xml(h5, found["xml"]), where)
        table = read_acquisitions(h5, found["data"], slice_index)
        numbers, reps, note, acceleration, coils = _select(h5, enc, table, slice_index, repetition)
        samples = read_samples(h5, found["data"], table, numbers)
        data, imaging, calibration = _assemble(h5, enc, table, numbers, samples, coils)
        if not (enc.rows <= enc.lines and enc.cols <= enc.readout):
            raise HeaderMismatchError(
                f"recon matrix {(enc.rows, enc.cols)} is larger than the encoded matrix {(enc.lines, enc.readout)}",
                where,
            )
        maps = _array(h5, group, "csm", (coils, enc.rows, enc.cols))
        reference = _array(h5, group, "phantom", (enc.rows, enc.cols))
    return KSpace(
        data=data,
        imaging=imaging,
        calibration=calibration,
        recon_shape=(enc.rows, enc.cols),
        fov_mm=enc.fov_mm,
        acceleration=acceleration,
        coil_maps=maps,
        reference=reference,
        provenance=enc.parameters,
        repetitions=reps,
        read_note=note,
    )
