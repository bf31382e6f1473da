"""Fixtures for the raw-data tests: small geometries, phantoms and reference-tool files."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from raw_data import (
    DigitalPatient,
    FanBeamGeometry,
    ParallelBeamGeometry,
    ScannerProfile,
    fan_beam,
    make_patient,
    parallel_beam,
)

SIZE = 64
SHEPP_LOGAN_TOOL = "ismrmrd_generate_cartesian_shepp_logan"


@pytest.fixture(scope="session")
def patient() -> DigitalPatient:
    """A fixed CT head with one 10 mm, +50 HU lesion."""
    return make_patient(0, lesions=1, radius_mm=(10, 10), contrast_hu=(50, 50), vary_anatomy=False)


@pytest.fixture(scope="session")
def parallel_geometry() -> ParallelBeamGeometry:
    """Parallel beam, 96 views over 180 degrees, 91 detectors of 4 mm, 64 x 64 grid of 4 mm."""
    return parallel_beam(96, 91, 4.0, (SIZE, SIZE), 4.0)


@pytest.fixture(scope="session")
def fan_geometry() -> FanBeamGeometry:
    """Fan beam, 180 views over 360 degrees, 128 detectors, 64 x 64 grid of 4 mm."""
    return fan_beam(180, 128, 4.8, 500.0, 900.0, (SIZE, SIZE), 4.0)


@pytest.fixture(scope="session")
def small_profile() -> ScannerProfile:
    """A coarse scanner profile that keeps scans fast on a 64-pixel grid."""
    return ScannerProfile(
        name="test-coarse",
        description="coarse profile for tests",
        n_detectors=160,
        detector_pitch_mm=4.0,
        n_views=240,
        source_to_isocenter_mm=500.0,
        source_to_detector_mm=900.0,
        incident_flux=1e5,
        electronic_noise=5.0,
        detector_blur_fwhm=1.0,
    )


@pytest.fixture(scope="session")
def shepp_logan_tool() -> str:
    """Path of the reference C++ generator; ``make test`` installs Debian ismrmrd-tools."""
    path = shutil.which(SHEPP_LOGAN_TOOL)
    if path is None:
        pytest.fail(f"{SHEPP_LOGAN_TOOL} not found: install it with apt-get install ismrmrd-tools")
    return path


@pytest.fixture(scope="session")
def make_tool_file(shepp_logan_tool: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Return ``make(name, *options)``: run the reference generator, return the file."""
    folder = tmp_path_factory.mktemp("tool")

    def make(name: str, *options: str) -> Path:
        out = folder / name
        cmd = [shepp_logan_tool, "-o", str(out), *options]
        subprocess.run(cmd, check=True, capture_output=True, cwd=folder)
        return out

    return make


@pytest.fixture(scope="session")
def tool_file(make_tool_file: Callable[..., Path]) -> Path:
    """Fully sampled 128 x 128, 8 coils, readout oversampling 2, the tool's default noise."""
    return make_tool_file("shepp_logan.h5", "-m", "128", "-c", "8")
