"""Virtual comparative scanning and the command line."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from raw_data import (
    Comparison,
    ProfileNotFoundError,
    compare_profiles,
    format_table,
    make_patient,
    read_sinogram,
    write_panel,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TWO_PROFILES = ("definition-like", "compact-head")


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    patient = make_patient(2, radius_mm=(12.0, 12.0), contrast_hu=(60.0, 60.0))
    return compare_profiles(patient, 64, profiles=TWO_PROFILES, seed=0)


def test_every_profile_is_scored_against_ground_truth(comparison: Comparison) -> None:
    assert [s.profile for s in comparison.scores] == list(TWO_PROFILES)
    for score in comparison.scores:
        assert 10.0 < score.psnr_db < 60.0
        assert 0.0 < score.ssim <= 1.0
        assert score.lesion_cnr > 0.0
    assert comparison.ground_truth_hu.shape == (64, 64)


def test_more_dose_gives_better_quality() -> None:
    patient = make_patient(2, radius_mm=(12.0, 12.0), contrast_hu=(60.0, 60.0))
    low = compare_profiles(patient, 64, profiles=["compact-head"], dose_factor=0.1).scores[0]
    high = compare_profiles(patient, 64, profiles=["compact-head"], dose_factor=10.0).scores[0]
    assert high.psnr_db > low.psnr_db
    assert high.lesion_cnr > low.lesion_cnr


def test_healthy_patient_has_no_cnr() -> None:
    result = compare_profiles(make_patient(1, lesions=0), 48, profiles=["compact-head"])
    assert math.isnan(result.scores[0].lesion_cnr)
    assert "compact-head" in format_table(result)


def test_table_lists_each_profile_with_its_figures(comparison: Comparison) -> None:
    table = format_table(comparison).splitlines()
    assert table[0].split() == ["profile", "PSNR", "[dB]", "SSIM", "lesion", "CNR"]
    first = comparison.scores[0]
    assert table[2].split()[0] == first.profile
    assert float(table[2].split()[1]) == pytest.approx(first.psnr_db, abs=0.01)


def test_panel_is_a_png_with_one_image_per_profile_plus_truth(comparison: Comparison, tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "panel.png"
    write_panel(comparison, out)
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    width, height = Image.open(out).size
    assert width > 2 * height  # three panels side by side


def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ProfileNotFoundError, match="no scanner profile 'x-ray-9000'"):
        compare_profiles(make_patient(0), 32, profiles=["x-ray-9000"])


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-m", "raw_data", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(root), "PATH": ""},
        check=False,
    )


def test_cli_compare_prints_the_table_and_writes_the_panel(tmp_path: Path) -> None:
    out = tmp_path / "panel.png"
    result = _cli(
        "compare",
        "--size",
        "48",
        "--seed",
        "0",
        "--profiles",
        ",".join(TWO_PROFILES),
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("patient: ct_head seed=0")
    assert [line.split()[0] for line in lines[3:5]] == list(TWO_PROFILES)
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_cli_scan_writes_a_sinogram_that_info_describes(tmp_path: Path) -> None:
    out = tmp_path / "scan.h5"
    result = _cli(
        "scan",
        "--patient-seed",
        "4",
        "--size",
        "48",
        "--profile",
        "compact-head",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    sinogram = read_sinogram(out)
    assert sinogram.data.shape == (720, 512)
    assert np.isfinite(sinogram.data).all()
    info = _cli("info", str(out), cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert "fan beam, data (720, 512)" in info.stdout
    assert "scanner_profile: compact-head" in info.stdout


def test_cli_reports_bad_files_without_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage")
    result = _cli("info", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "bad.h5" in result.stderr
    assert "Traceback" not in result.stderr
