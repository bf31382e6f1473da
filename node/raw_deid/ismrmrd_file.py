"""Rebuild an ISMRMRD HDF5 file from its allow-list: header, acquisitions, known arrays.

The output always has one group, ``dataset``, holding the rebuilt XML header
(:mod:`node.raw_deid.ismrmrd_header`), the acquisitions with the header fields of
:data:`ACQUISITION_RULES`, and the numeric arrays of :data:`FILE_RULES`, without attributes. Images
(their attribute strings are free-text XML), waveforms (physiological signals), and every other
object, attribute, link or named type are left out. The source is opened read-only and the output
is built in memory.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

from node.deid import PatientContext, UidMapper
from node.errors import DeidentificationError
from node.raw_deid.h5 import local_object, local_values
from node.raw_deid.ismrmrd_header import rebuild_header
from node.raw_deid.rules import FieldRule, RuleSet

__all__ = ["ACQUISITION_RULES", "FILE_RULES", "rebuild_ismrmrd"]

GROUP = "dataset"
_COMPLEX64 = np.dtype([("real", "<f4"), ("imag", "<f4")])
_COMPLEX128 = np.dtype([("real", "<f8"), ("imag", "<f8")])
_KEEP = "needed to place the samples in k-space and reconstruct"
_DIRECTIONS = ("read_dir", "phase_dir", "slice_dir")
_POSITIONS = ("position", "patient_table_position")
_UNIT_TOLERANCE = 1e-3
_MAX_POSITION_MM = 10_000.0  # 10 m: no scanner bore or table travel comes near
_MAX_SAMPLE_TIME_US = 1e6  # one second per sample; dwell times are microseconds
_CHANNELS = 1024  # bits in channel_mask (16 x 64)

FILE_RULES = RuleSet((
    FieldRule("/dataset", "structure", "keep", "the ISMRMRD group; written as 'dataset' whatever the source "
              "called it (a group name is free text)"),
    FieldRule("/dataset/xml", "derived", "replace", "the header, rebuilt from its own allow-list (below)"),
    FieldRule("/dataset/data", "data", "keep", "the acquisitions, rebuilt with the standard ISMRMRD type and only "
              "the header fields below"),
    FieldRule("/dataset/csm", "data", "keep", "coil sensitivity maps, kept only as real or complex floats (the reader "
              "uses them); integers, which can spell text, are dropped"),
    FieldRule("/dataset/phantom", "data", "keep", "reference image of a simulation, kept only as real or "
              "complex floats (the reader uses it)"),
    FieldRule("/dataset/coil_images", "data", "keep", "coil images the reference tools write, kept only as real or "
              "complex floats"),
    FieldRule("/dataset/waveforms", "data", "drop", "ECG, pulse and respiratory traces are physiological "
              "signals; not needed to reconstruct"),
    FieldRule("/dataset/*", "data", "drop", "images (their attribute strings are free-text XML meta) and any "
              "other object: not on the list"),
    FieldRule("/*", "data", "drop", "anything beside the ISMRMRD group"),
))

ACQUISITION_RULES = RuleSet((
    FieldRule("head/version", "integer", "keep", "header layout version"),
    FieldRule("head/flags", "integer", "keep", "what each acquisition is (noise, calibration, last in slice...)"),
    FieldRule("head/measurement_uid", "identifier", "replace",
              "vendor measurement number, a key into the scanner's own database: set to 0"),
    FieldRule("head/scan_counter", "integer", "keep", "acquisition order"),
    FieldRule("head/acquisition_time_stamp", "time", "keep",
              "time of day in scanner ticks; a whole-day shift leaves it unchanged (DICOM Acquisition Time is kept)"),
    FieldRule("head/physiology_time_stamp", "integer", "keep", "time since the last cardiac or respiratory "
              "trigger, needed for gated reconstruction"),
    *(FieldRule(f"head/{name}", "integer", "keep", _KEEP) for name in (
        "number_of_samples", "available_channels", "active_channels")),
    FieldRule("head/channel_mask", "integer", "keep",
              "which receiver channels are on, one bit per channel: only the bits of channels the coil has "
              "(below available_channels, or active_channels if larger) are kept, the others set to 0 "
              "(1024 bits for a coil of a few channels are room for text)"),
    *(FieldRule(f"head/{name}", "integer", "keep", _KEEP) for name in (
        "discard_pre", "discard_post", "center_sample", "encoding_space_ref", "trajectory_dimensions")),
    FieldRule("head/sample_time_us", "real", "keep", _KEEP + "; a finite dwell time, else the file is refused",
              limits=(0.0, _MAX_SAMPLE_TIME_US)),
    *(FieldRule(f"head/{name}", "real", "keep",
                "slice orientation: each vector must be finite and a unit vector (|norm - 1| < "
                f"{_UNIT_TOLERANCE:g}) or all zeros (not recorded), else the file is refused (three floats of "
                "text are neither)") for name in _DIRECTIONS),
    *(FieldRule(f"head/{name}", "real", "keep",
                "position in mm: each coordinate must be finite and within 10 m of the isocentre, else the "
                "file is refused", limits=(-_MAX_POSITION_MM, _MAX_POSITION_MM)) for name in _POSITIONS),
    FieldRule("head/idx", "structure", "keep", "the encoding counters"),
    FieldRule("head/idx/*", "integer", "keep", "loop counters (line, partition, slice, repetition...)"),
    FieldRule("head/idx/user", "identifier", "replace",
              "the encoding's free user counters, vendor-defined like user_int: set to 0"),
    FieldRule("head/user_int", "identifier", "replace",
              "vendor-defined numbers of unknown meaning (could carry a date or an id): set to 0"),
    FieldRule("head/user_float", "identifier", "replace", "vendor-defined numbers of unknown meaning: set to 0"),
    FieldRule("traj", "data", "keep", "k-space trajectory, float32"),
    FieldRule("data", "data", "keep", "the complex samples, float32 pairs"),
))
_ARRAYS = tuple(r.path.rsplit("/", 1)[1] for r in FILE_RULES
                if r.kind == "data" and r.action == "keep" and r.path.count("/") == 2 and r.path != "/dataset/data")


def rebuild_ismrmrd(
    source: Path, patient: PatientContext, uids: UidMapper
) -> tuple[bytes, str | None, tuple[str, ...]]:
    """Return a new ISMRMRD file with only the allowed content of ``source``, its mapped study UID, and notes.

    Parameters:
        source: the validated ISMRMRD file (opened read-only).
        patient: the pseudonym and date offset.
        uids: the node's UID mapper, shared with DICOM so the same study UID maps the same way.

    Raises:
        DeidentificationError: no ISMRMRD group, a header that cannot be rebuilt, or acquisitions
            of an unexpected type.
    """
    with h5py.File(source, "r") as src:
        group = _ismrmrd_group(src)
        xml, study_uid = rebuild_header(_text(group["xml"]), patient, uids)
        acquisitions = _acquisitions(group["data"])
        found = {name: _array(group[name], f"/dataset/{name}")
                 for name in _ARRAYS if _is_local(group, name, h5py.Dataset)}
        arrays = {name: values for name, values in found.items() if values is not None}
        notes = _notes(src, group, arrays)
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as dst:
        out = dst.create_group(GROUP)
        out.create_dataset("xml", data=np.array([xml.encode("utf-8")], dtype=object),
                           dtype=h5py.special_dtype(vlen=bytes))
        out.create_dataset("data", data=acquisitions, maxshape=(None,))
        for name, values in arrays.items():
            out.create_dataset(name, data=values)
    return buffer.getvalue(), study_uid, notes


def _is_local(group: h5py.Group, name: str, kind: type) -> bool:
    """Whether ``name`` in ``group`` is an object of ``kind`` in this file (external links are never followed)."""
    return isinstance(local_object(group, name), kind)


def _ismrmrd_group(src: h5py.File) -> h5py.Group:
    """The group holding ``xml`` and ``data``: ``dataset`` by convention, or the only such group."""
    candidates = [name for name in src if _is_local(src, name, h5py.Group)
                  and _is_local(src[name], "xml", h5py.Dataset) and _is_local(src[name], "data", h5py.Dataset)]
    if GROUP in candidates:
        return src[GROUP]
    distinct = {src[name].id: name for name in candidates}  # soft links to one group count once
    if len(distinct) == 1:
        return src[candidates[0]]
    raise DeidentificationError(
        f"the file holds {len(distinct)} groups with an ISMRMRD header and acquisitions, expected one "
        "(named 'dataset'); split the file"
    )


def _text(dset: h5py.Dataset) -> str | bytes:
    value = local_values(dset, "/dataset/xml", () if dset.shape == () else 0)
    if isinstance(value, bytes | str):
        return value
    raise DeidentificationError(f"the ISMRMRD header dataset holds {dset.dtype}, expected text")


def _acquisitions(dset: h5py.Dataset) -> np.ndarray:
    """The acquisitions in the standard type, copying only the allowed header fields."""
    names = dset.dtype.names or ()
    if "head" not in names or "data" not in names:
        raise DeidentificationError("the ISMRMRD acquisitions lack 'head' or 'data'; not an ISMRMRD dataset")
    source = local_values(dset, "/dataset/data")
    out = np.zeros(source.shape, dtype=acquisition_dtype)
    _copy_fields(out["head"], source["head"], "head")
    _check_numbers(out["head"])
    for field in ("traj", "data"):
        if field not in names:
            continue
        rule = ACQUISITION_RULES.get(field)
        if rule is not None and rule.action == "keep":
            samples = np.empty(source.shape, dtype=object)  # one array per acquisition, of its own length
            for i, value in enumerate(source[field]):
                samples[i] = _floats(value, field)
            out[field] = samples
    return out


def _copy_fields(dst: np.ndarray, src: np.ndarray, path: str) -> None:
    for name in dst.dtype.names or ():
        rule: FieldRule | None = ACQUISITION_RULES.get(f"{path}/{name}")
        if rule is None or rule.action != "keep" or name not in (src.dtype.names or ()):
            continue  # left at zero
        if rule.kind == "structure":
            _copy_fields(dst[name], src[name], f"{path}/{name}")
        elif src.dtype[name].base.kind in "iuf" and src.dtype[name].shape == dst.dtype[name].shape:
            dst[name] = src[name]
        else:
            raise DeidentificationError(
                f"acquisition header field {path}/{name} has type {src.dtype[name]}, expected {dst.dtype[name]}; "
                "the acquisitions do not follow the ISMRMRD layout"
            )


def _check_numbers(head: np.ndarray) -> None:
    """Clear the channel_mask bits of absent channels; refuse directions and positions that are not geometry.

    A kept number is copied bit for bit, so whatever its meaning leaves free can hold text: the
    bits of channels the coil lacks, and vectors or positions no scanner writes (twelve bytes of
    text make three finite float32 values, but not a unit vector nor a position within 10 m).

    Raises:
        DeidentificationError: naming the field and the first bad acquisition (never its value).
    """
    if head.size == 0:
        return
    channels = np.minimum(np.maximum(head["available_channels"], head["active_channels"]).astype(np.int64), _CHANNELS)
    bit = np.arange(_CHANNELS, dtype=np.int64).reshape(16, 64)
    present = bit[np.newaxis] < channels.reshape(-1, 1, 1)  # (acquisitions, word, bit)
    keep = (present.astype(np.uint64) << (bit % 64).astype(np.uint64)).sum(axis=2, dtype=np.uint64)
    head["channel_mask"] &= keep.reshape(head["channel_mask"].shape)
    for name in _DIRECTIONS:
        vectors = head[name].astype(np.float64)
        norm = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0.0), axis=-1)
        good = np.isfinite(vectors).all(axis=-1) & ((vectors == 0).all(axis=-1) | (abs(norm - 1) < _UNIT_TOLERANCE))
        _refuse_unless(good, name, f"a unit vector (|norm - 1| < {_UNIT_TOLERANCE:g}) or all zeros, finite")
    for name in _POSITIONS:
        values = head[name]
        good = (np.isfinite(values) & (abs(values) <= _MAX_POSITION_MM)).all(axis=-1)
        _refuse_unless(good, name, f"finite coordinates within +-{_MAX_POSITION_MM:g} mm")
    times = head["sample_time_us"]
    _refuse_unless(np.isfinite(times) & (times >= 0) & (times <= _MAX_SAMPLE_TIME_US), "sample_time_us",
                   f"a finite dwell time from 0 to {_MAX_SAMPLE_TIME_US:g} microseconds")


def _refuse_unless(good: np.ndarray, name: str, expected: str) -> None:
    bad = np.flatnonzero(~good)
    if bad.size:
        raise DeidentificationError(
            f"acquisition header field head/{name} of acquisition {int(bad[0])} ({bad.size} of {good.size} "
            f"acquisitions) is not {expected}; the value is not geometry a scanner writes (damaged, or carrying "
            "other data), so the file is refused: correct or remove those acquisitions and ingest it again"
        )


def _floats(value: Any, field: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise DeidentificationError(f"acquisition {field} holds {array.dtype} values, expected float32 samples")
    return array.astype(np.float32).ravel()


def _array(dset: h5py.Dataset, where: str) -> np.ndarray | None:
    """A known array as plain floats (complex as ISMRMRD's real/imag pairs), or None for any other type.

    ISMRMRD writes these arrays as real or complex floats. Integers are refused: an 8-bit array is
    text in all but name, and a wider one can hold it as well.
    """
    values = local_values(dset, where)
    dtype = values.dtype
    if dtype.names and set(dtype.names) == {"real", "imag"} and all(dtype[n].kind == "f" for n in dtype.names):
        wide = max(dtype[n].itemsize for n in dtype.names) > 4
        out = np.empty(values.shape, dtype=_COMPLEX128 if wide else _COMPLEX64)
        out["real"], out["imag"] = values["real"], values["imag"]
        return out
    if dtype.kind == "f":
        # A fresh plain type: the source's type could carry metadata that would be written back with it.
        return np.asarray(values, dtype=np.dtype(dtype.newbyteorder("<").str))
    if dtype.kind == "c":
        out = np.empty(values.shape, dtype=_COMPLEX128 if dtype.itemsize > 8 else _COMPLEX64)
        out["real"], out["imag"] = values.real, values.imag
        return out
    return None


def _notes(src: h5py.File, group: h5py.Group, arrays: dict[str, np.ndarray]) -> tuple[str, ...]:
    """Counts of what was left out (never names: a name can itself be the identifier)."""
    kept = {"xml", "data", *_ARRAYS}
    left_in_group = [name for name in group if name not in kept]
    images = sum(1 for name in left_in_group if _is_local(group, name, h5py.Group) and "attributes" in group[name])
    waveforms = "waveforms" in left_in_group
    others = len(left_in_group) - images - int(waveforms) + sum(1 for name in src if "/" + name != group.name)
    notes = [f"raw de-identification dropped the {name} array: not real or complex floats"
             for name in _ARRAYS if name not in arrays and _is_local(group, name, h5py.Dataset)]
    if images:
        notes.append(f"raw de-identification dropped {images} ISMRMRD image series (free-text attributes)")
    if waveforms:
        notes.append("raw de-identification dropped the ISMRMRD waveforms (physiological signals)")
    if others:
        notes.append(f"raw de-identification left out {others} HDF5 objects not on the ISMRMRD allow-list")
    return tuple(notes)
