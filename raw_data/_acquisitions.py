"""The ISMRMRD acquisition table (``/<dataset>/data``) read defensively, one step at a time.

The table is a one-dimensional compound dataset: a fixed-size header per acquisition
(``head``) and two variable-length float arrays (``traj``, ``data``). The headers are read
first, on their own; the stored lengths of the variable-length arrays are then checked
against what each header announces (``2 * channels * samples`` floats of data,
``samples * dimensions`` of trajectory) from the raw storage, before HDF5 allocates any of
them; only then are the samples of the selected acquisitions read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import h5py
import ismrmrd
import numpy as np
import numpy.typing as npt

from raw_data._hdf5 import Hdf5File, reading
from raw_data.errors import CorruptFileError, HeaderMismatchError, IsmrmrdFormatError

__all__ = ["Acquisitions", "read_acquisitions"]

_HEAD_FIELDS = (
    "flags",
    "number_of_samples",
    "active_channels",
    "discard_pre",
    "discard_post",
    "center_sample",
    "encoding_space_ref",
    "trajectory_dimensions",
    "idx",
)
_IDX_FIELDS = ("kspace_encode_step_1", "slice", "contrast", "phase", "repetition", "set")
_NON_IMAGING = (
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


def flag_mask(*flags: int) -> int:
    """Return the bit mask of ISMRMRD acquisition flags (numbered from 1)."""
    mask = 0
    for flag in flags:
        mask |= 1 << (flag - 1)
    return mask


_NON_IMAGING_MASK = flag_mask(*_NON_IMAGING)


@dataclass(frozen=True)
class Acquisitions:
    """The headers of every acquisition of a file, as arrays indexed by acquisition number."""

    flags: npt.NDArray[np.uint64]
    samples: npt.NDArray[np.int64]
    channels: npt.NDArray[np.int64]
    discard_pre: npt.NDArray[np.int64]
    discard_post: npt.NDArray[np.int64]
    center_sample: npt.NDArray[np.int64]
    line: npt.NDArray[np.int64]
    slice: npt.NDArray[np.int64]
    repetition: npt.NDArray[np.int64]
    imaging: npt.NDArray[np.bool_]  # an imaging acquisition of encoding space 0, contrast/phase/set 0

    def has(self, n: int, flag: int) -> bool:
        """Tell whether acquisition ``n`` carries ``flag``."""
        return bool(int(self.flags[n]) & flag_mask(flag))


def _check_table_type(h5: Hdf5File, dset: Any) -> None:
    shape, dtype = h5.describe(dset)
    names = dtype.names or ()
    if len(shape) != 1 or not {"head", "data"} <= set(names):
        raise IsmrmrdFormatError(
            f"{dset.name} has shape {shape} and fields {names}, expected a one-dimensional table "
            "with fields 'head' and 'data' (ISMRMRD acquisitions)",
            h5.where,
        )
    base = h5py.check_vlen_dtype(dtype["data"])
    if base is None or base.kind != "f":
        raise IsmrmrdFormatError(
            f"{dset.name} field 'data' has type {dtype['data']}, expected variable-length float32", h5.where
        )
    head = dtype["head"]
    missing = [f for f in _HEAD_FIELDS if f not in (head.names or ())]
    missing += [f"idx.{f}" for f in _IDX_FIELDS if "idx" in (head.names or ()) and f not in (head["idx"].names or ())]
    if missing:
        raise IsmrmrdFormatError(f"{dset.name} acquisition headers lack the fields {missing}", h5.where)


def read_acquisitions(h5: Hdf5File, dset: Any, slice_index: int) -> Acquisitions:
    """Read and check every acquisition header of the table ``dset``.

    Headers and stored lengths are decoded from the raw records: HDF5 would allocate every
    variable-length array at its stored length even to return the headers alone.

    Raises:
        IsmrmrdFormatError: not an ISMRMRD acquisition table, or stored in a way this
            reader does not decode.
        HeaderMismatchError: an acquisition holds another number of values than its header says.
        CorruptFileError: the table cannot be read.
    """
    _check_table_type(h5, dset)
    records = h5.raw_records(dset)
    if records is None:
        raise IsmrmrdFormatError(
            f"{dset.name} is stored with a layout or filter this reader does not decode (it reads "
            "contiguous or chunked storage, with deflate, shuffle or fletcher32); repack the file "
            "with h5repack -f NONE",
            h5.where,
        )
    heads = h5.member(dset, records, "head")
    data_lengths = h5.member(dset, records, "data")
    names = h5.describe(dset)[1].names or ()
    traj_lengths = h5.member(dset, records, "traj") if "traj" in names else np.zeros_like(data_lengths)
    idx = heads["idx"]
    flags = heads["flags"].astype(np.uint64)
    out = Acquisitions(
        flags=flags,
        samples=heads["number_of_samples"].astype(np.int64),
        channels=heads["active_channels"].astype(np.int64),
        discard_pre=heads["discard_pre"].astype(np.int64),
        discard_post=heads["discard_post"].astype(np.int64),
        center_sample=heads["center_sample"].astype(np.int64),
        line=idx["kspace_encode_step_1"].astype(np.int64),
        slice=idx["slice"].astype(np.int64),
        repetition=idx["repetition"].astype(np.int64),
        imaging=((flags & np.uint64(_NON_IMAGING_MASK)) == 0)
        & (heads["encoding_space_ref"] == 0)
        & (idx["contrast"] == 0)
        & (idx["phase"] == 0)
        & (idx["set"] == 0),
    )
    expected_data = 2 * out.channels * out.samples
    expected_traj = out.samples * heads["trajectory_dimensions"].astype(np.int64)
    for what, stored, expected in (("data", data_lengths, expected_data), ("traj", traj_lengths, expected_traj)):
        bad = np.nonzero(stored.astype(np.int64) != expected)[0]
        if bad.size:
            n = int(bad[0])
            raise HeaderMismatchError(
                f"acquisition {n} holds {int(stored[n])} {what} values but its header announces "
                f"{int(expected[n])} ({int(out.channels[n])} channels, {int(out.samples[n])} samples); "
                f"{bad.size} acquisitions disagree, the table is corrupt",
                h5.where,
            )
    if int(expected_data.sum()) * 4 > h5.size:
        raise CorruptFileError(
            f"the acquisitions announce {int(expected_data.sum()) * 4} bytes of samples, more than the "
            f"{h5.size}-byte file holds",
            h5.where,
        )
    return out


def read_samples(h5: Hdf5File, dset: Any, table: Acquisitions, numbers: npt.NDArray[np.int64]) -> list[Any]:
    """Return the complex samples ``(channels, samples)`` of the given acquisitions, in order."""
    out: list[Any] = []
    if numbers.size == 0:
        return out
    # Read runs of consecutive acquisitions at once: one HDF5 call per run, not per line.
    breaks = np.nonzero(np.diff(numbers) != 1)[0] + 1
    for run in np.split(numbers, breaks):
        first, last = int(run[0]), int(run[-1])
        with reading(h5.where, f"the samples of acquisitions {first}-{last}"):
            stored = np.asarray(dset.fields("data")[first : last + 1])
        for n, values in zip(run, stored, strict=True):
            floats = np.asarray(values, dtype=np.float32)
            out.append(floats.view(np.complex64).reshape(int(table.channels[n]), int(table.samples[n])))
    return out
