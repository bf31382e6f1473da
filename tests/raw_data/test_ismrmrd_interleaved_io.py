"""Interleaved ISMRMRD acquisitions from the Debian reference tool.

``ismrmrd_generate_cartesian_shepp_logan -a R`` writes R repetitions, each an undersampled
pass over every R-th line with its own offset, and declares ``calibrationMode``
``interleaved``. Read together they are the fully sampled k-space; read as repetition 0
alone they reconstruct aliased (correlation 0.73 for R = 2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest

from raw_data import MissingFieldError, read_ismrmrd, reconstruct_kspace


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays, flattened."""
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def coil_rss(path: Path) -> np.ndarray:
    """Root-sum-of-squares of the noise-free coil images the tool stores, cropped to recon."""
    with h5py.File(path, "r") as f:
        stored = f["dataset/coil_images"][0]
    images = stored["real"] + 1j * stored["imag"]
    rows, width = images.shape[1:]
    start = width // 2 - rows // 2  # the readout is oversampled twice
    return np.sqrt((np.abs(images[:, :, start : start + rows]) ** 2).sum(axis=0))


@pytest.mark.parametrize(
    ("matrix", "coils", "acceleration"),
    [(64, 4, 1), (64, 4, 2), (96, 8, 3), (64, 2, 4), (128, 8, 3), (48, 6, 2)],
)
def test_interleaved_passes_combine_into_the_full_k_space(
    make_tool_file: Callable[..., Path], matrix: int, coils: int, acceleration: int
) -> None:
    path = make_tool_file(
        f"interleaved-{matrix}-{coils}-{acceleration}.h5",
        "-m",
        str(matrix),
        "-c",
        str(coils),
        "-a",
        str(acceleration),
        "-n",
        "0",
    )
    kspace = read_ismrmrd(path)
    assert kspace.repetitions == tuple(range(acceleration))
    assert kspace.data.shape == (coils, matrix, 2 * matrix)
    assert kspace.sampled.all()
    assert kspace.acceleration == 1
    if acceleration > 1:
        assert f"calibrationMode 'interleaved' with acceleration {acceleration}" in kspace.read_note
    assert correlation(reconstruct_kspace(kspace, method="rss"), coil_rss(path)) >= 0.99


def test_noisy_interleaved_file_reconstructs_close_to_its_coil_images(make_tool_file: Callable[..., Path]) -> None:
    clean = make_tool_file("clean-a2.h5", "-m", "64", "-c", "4", "-a", "2", "-n", "0")
    noisy = make_tool_file("noisy-a2.h5", "-m", "64", "-c", "4", "-a", "2")  # the tool's noise, 0.05
    clean_r = correlation(reconstruct_kspace(read_ismrmrd(clean), method="rss"), coil_rss(clean))
    noisy_r = correlation(reconstruct_kspace(read_ismrmrd(noisy), method="rss"), coil_rss(noisy))
    assert 0.95 <= noisy_r < clean_r


def test_one_pass_alone_is_read_only_on_request_and_says_so(make_tool_file: Callable[..., Path]) -> None:
    path = make_tool_file("one-pass.h5", "-m", "64", "-c", "4", "-a", "2", "-n", "0")
    odd = read_ismrmrd(path, repetition=1)
    assert odd.repetitions == (1,)
    assert odd.acceleration == 2
    assert np.nonzero(odd.sampled)[0].tolist() == list(range(1, 64, 2))
    assert "one undersampled pass: pass repetition=None to combine" in odd.read_note
    # What the reader used to return silently: aliased, far from the coil images.
    assert correlation(reconstruct_kspace(read_ismrmrd(path, repetition=0), method="rss"), coil_rss(path)) < 0.8


def test_calibration_lines_of_interleaved_passes_are_kept(make_tool_file: Callable[..., Path]) -> None:
    path = make_tool_file("calib.h5", "-m", "64", "-c", "4", "-a", "2", "-w", "16", "-C", "-n", "0")
    kspace = read_ismrmrd(path)  # the noise acquisition is skipped
    assert kspace.calibration.sum() == 16
    assert kspace.imaging.all()
    assert correlation(reconstruct_kspace(kspace, method="rss"), coil_rss(path)) >= 0.99


def test_several_interleaved_frames_read_one_frame_at_a_time(make_tool_file: Callable[..., Path]) -> None:
    path = make_tool_file("frames.h5", "-m", "48", "-c", "4", "-a", "3", "-r", "2", "-n", "0")
    first = read_ismrmrd(path)
    assert first.repetitions == (0, 1, 2)
    assert "2 such frames" in first.read_note
    assert "repetition=(3, 4, 5)" in first.read_note
    second = read_ismrmrd(path, repetition=(3, 4, 5))
    assert second.repetitions == (3, 4, 5)
    assert second.acceleration == 1
    for kspace in (first, second):
        assert correlation(reconstruct_kspace(kspace, method="rss"), coil_rss(path)) >= 0.99


def test_complete_repetitions_are_not_mixed_and_the_choice_is_stated(make_tool_file: Callable[..., Path]) -> None:
    path = make_tool_file("repeated.h5", "-m", "64", "-c", "4", "-r", "3", "-n", "0")
    kspace = read_ismrmrd(path)
    assert kspace.repetitions == (0,)
    assert "repetition 0 of repetitions [0, 1, 2]" in kspace.read_note
    assert "calibrationMode is not given" in kspace.read_note
    assert read_ismrmrd(path, repetition=2).repetitions == (2,)


def test_a_repetition_that_is_not_there_is_refused(make_tool_file: Callable[..., Path]) -> None:
    path = make_tool_file("absent-rep.h5", "-m", "32", "-c", "2", "-a", "2", "-n", "0")
    with pytest.raises(
        MissingFieldError,
        match=r"no imaging acquisitions for slice 0, repetitions \[5\] \(repetitions in this slice: \[0, 1\]\)",
    ):
        read_ismrmrd(path, repetition=5)
