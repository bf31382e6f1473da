"""Readers against corrupted files: whatever the bytes, a reader returns a valid object or
raises one of the errors its docstring lists, never anything else, never hangs, never crashes.

Each corpus is seeded and generated here from a small file written by our writers, by the
Debian reference tool ``ismrmrd_generate_cartesian_shepp_logan`` or shipped with pydicom
(``CT_small.dcm``), then read in a worker process (see ``tests/raw_data/mutations.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pydicom.data
import pytest

from raw_data import (
    ImageGrid,
    Sinogram,
    coil_sensitivities,
    fan_beam,
    rasterize_ellipses,
    shepp_logan,
    simulate_kspace,
    write_ismrmrd,
    write_sinogram,
)
from raw_data.scanners import ScannerProfile
from tests.raw_data.mutations import ReaderProcess, run_corpus

MUTANTS = 600


def _sinogram_file(folder: Path, _tool: Callable[..., Path]) -> Path:
    geometry = fan_beam(24, 16, 4.8, 500.0, 900.0, (16, 16), 4.0)
    data = np.random.default_rng(3).random(geometry.sinogram_shape, dtype=np.float32)
    profile = ScannerProfile(
        name="mutation-test",
        description="small profile for the mutation corpus",
        n_detectors=16,
        detector_pitch_mm=4.8,
        n_views=24,
        source_to_isocenter_mm=500.0,
        source_to_detector_mm=900.0,
        incident_flux=1e5,
        electronic_noise=5.0,
        detector_blur_fwhm=1.0,
    )
    path = folder / "sinogram.h5"
    write_sinogram(path, Sinogram(data, geometry, profile, {"source": "MARK-0007-ZQX", "seed": "3"}))
    return path


def _our_ismrmrd_file(folder: Path, _tool: Callable[..., Path]) -> Path:
    image = rasterize_ellipses(shepp_logan(240.0), ImageGrid((16, 16), 15.0))
    kspace = simulate_kspace(
        image,
        coil_sensitivities((16, 16), 2),
        acceleration=2,
        calibration_lines=4,
        noise_std=0.01,
        readout_oversampling=2,
    )
    path = folder / "ours.h5"
    write_ismrmrd(path, kspace)
    return path


def _tool_ismrmrd_file(folder: Path, tool: Callable[..., Path]) -> Path:
    # Interleaved acceleration 2 with calibration lines and a noise acquisition: every
    # path of the reader (skipping, combining repetitions, calibration flags) is in play.
    return tool("mutation-source.h5", "-m", "32", "-c", "2", "-a", "2", "-w", "8", "-C")


def _dicom_file(folder: Path, _tool: Callable[..., Path]) -> Path:
    source = Path(pydicom.data.get_testdata_file("CT_small.dcm"))
    path = folder / "ct.dcm"
    path.write_bytes(source.read_bytes())
    return path


CORPORA = {
    "sinogram": ("raw_data.sinogram_io:read_sinogram", _sinogram_file, 11),
    "ismrmrd-ours": ("raw_data.ismrmrd_io:read_ismrmrd", _our_ismrmrd_file, 12),
    "ismrmrd-tool": ("raw_data.ismrmrd_io:read_ismrmrd", _tool_ismrmrd_file, 13),
    "dicom": ("raw_data.virtual_scan:read_dicom_attenuation", _dicom_file, 14),
}


@pytest.mark.parametrize("kind", sorted(CORPORA))
def test_mutants_read_or_raise_only_documented_errors(
    kind: str, tmp_path: Path, make_tool_file: Callable[..., Path]
) -> None:
    reader, build, seed = CORPORA[kind]
    original = build(tmp_path, make_tool_file)
    findings, tally = run_corpus(reader, original, tmp_path, seed=seed, count=MUTANTS)
    assert not findings, f"{len(findings)} of {MUTANTS} mutants of {kind}: {tally}\n" + "\n".join(findings)
    assert sum(tally.values()) == MUTANTS
    # The corpus must actually break files, not only touch sample values.
    assert tally.get("CorruptFileError", 0) >= MUTANTS // 10, tally


def _overwrite(path: Path, offset: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("kind", "reader"),
    [("sinogram", "raw_data.sinogram_io:read_sinogram"), ("ismrmrd-ours", "raw_data.ismrmrd_io:read_ismrmrd")],
)
def test_global_heap_that_would_hang_hdf5_is_refused(
    kind: str, reader: str, tmp_path: Path, make_tool_file: Callable[..., Path]
) -> None:
    path = CORPORA[kind][1](tmp_path, make_tool_file)
    collection = path.read_bytes().index(b"GCOL")
    # First object of the collection: index 0 (free space), stored size 0. libhdf5's
    # collection decoder steps by the stored size, so it would never move on.
    _overwrite(path, collection + 16, b"\x00" * 16)
    with ReaderProcess(reader) as worker:
        outcome = worker.read(path)
    assert outcome.startswith("CorruptFileError: "), outcome
    assert f"global heap collection at byte {collection} is corrupt" in outcome


def test_dataset_claiming_more_than_the_file_holds_is_refused(
    tmp_path: Path, make_tool_file: Callable[..., Path]
) -> None:
    path = _sinogram_file(tmp_path, make_tool_file)
    with h5py.File(path, "r+") as f:
        del f["sinogram"]
        # A legal HDF5 extent of 1.6 TB with no chunk written: a small file can claim it.
        f.create_dataset("sinogram", shape=(1 << 30, 24, 16), dtype="f4", chunks=(1, 24, 16))
    with ReaderProcess("raw_data.sinogram_io:read_sinogram") as worker:
        outcome = worker.read(path)
    assert outcome.startswith("CorruptFileError: "), outcome
    assert "/sinogram claims shape (1073741824, 24, 16)" in outcome


def test_flipped_sample_count_is_refused_before_hdf5_allocates_it(
    tmp_path: Path, make_tool_file: Callable[..., Path]
) -> None:
    path = _our_ismrmrd_file(tmp_path, make_tool_file)
    with h5py.File(path, "r") as f:
        table = f["dataset/data"]
        chunk = table.id.get_chunk_info(0).byte_offset
        ftype = table.id.get_type()
        data_member = ftype.get_member_offset(ftype.get_member_index(b"data"))
    # The stored length of acquisition 0's samples: 2**31 - 1 floats (8 GiB) instead of 128.
    _overwrite(path, chunk + data_member, (2**31 - 1).to_bytes(4, "little"))
    with ReaderProcess("raw_data.ismrmrd_io:read_ismrmrd") as worker:
        outcome = worker.read(path)
    assert outcome.startswith("HeaderMismatchError: "), outcome
    assert "acquisition 0 holds 2147483647 data values but its header announces 128" in outcome


def test_damaged_datatype_that_would_corrupt_the_heap_is_refused(
    tmp_path: Path, make_tool_file: Callable[..., Path]
) -> None:
    path = _our_ismrmrd_file(tmp_path, make_tool_file)
    with h5py.File(path, "r") as f:
        info = h5py.h5o.get_info(f["dataset/csm"].id)
        start, length = info.addr, info.hdr.space.total
    raw = path.read_bytes()
    # IEEE float32 properties in a datatype message: bit offset 0, precision 32, exponent
    # at bit 23 of 8 bits, mantissa at 0 of 23 bits, bias 127. An exponent bias of 125 (one
    # flipped bit, found by the corpus with seed 102) makes h5py read the 4-byte 'real'
    # field as float64, overlapping 'imag': libc then aborts ("double free or corruption").
    pattern = b"\x00\x00\x20\x00\x17\x08\x00\x17\x7f\x00\x00\x00"
    at = raw.index(pattern, start, start + length)
    _overwrite(path, at + 8, b"\x7d")
    with ReaderProcess("raw_data.ismrmrd_io:read_ismrmrd") as worker:
        outcome = worker.read(path)
    assert outcome.startswith("CorruptFileError: "), outcome
    assert "the datatype of /dataset/csm is damaged: /dataset/csm.real is stored in 4 bytes" in outcome
