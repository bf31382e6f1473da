"""Readers against corrupted files: whatever the bytes, a reader returns a valid object or
raises one of the errors its docstring lists, never anything else, never hangs, never crashes.

Each corpus is seeded and generated here from a small file written by our writers, by the
Debian reference tool ``ismrmrd_generate_cartesian_shepp_logan``,
then read in a worker process (see ``tests/raw_data/mutations.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
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
from tests.raw_data.mutations import run_corpus

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


CORPORA = {
    "sinogram": ("raw_data.sinogram_io:read_sinogram", _sinogram_file, 11),
    "ismrmrd-ours": ("raw_data.ismrmrd_io:read_ismrmrd", _our_ismrmrd_file, 12),
    "ismrmrd-tool": ("raw_data.ismrmrd_io:read_ismrmrd", _tool_ismrmrd_file, 13),
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
