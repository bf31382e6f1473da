"""Virtual scanning: phantom and DICOM CT slices through scanner profiles, then FBP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from scipy import ndimage

from raw_data import (
    CorruptFileError,
    DataShapeError,
    DicomFormatError,
    DigitalPatient,
    MissingFileError,
    ScannerProfile,
    get_profile,
    read_dicom_attenuation,
    reconstruct,
    scan_image,
    to_hu,
)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays, flattened."""
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


@pytest.fixture(scope="module")
def ct_slice_path() -> str:
    return str(get_testdata_file("CT_small.dcm"))


def test_dicom_hounsfield_units_become_attenuation(ct_slice_path: str) -> None:
    image = read_dicom_attenuation(ct_slice_path)
    ds = pydicom.dcmread(ct_slice_path)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(to_hu(image.mu), np.maximum(hu, -1000.0), atol=1e-9)
    assert image.grid.shape == (128, 128)
    assert image.grid.pixel_size_mm == pytest.approx(0.661468)
    assert image.source.startswith("dicom pixel-data sha256:")


def test_dicom_slice_virtual_scan_reconstructs_to_the_slice(ct_slice_path: str) -> None:
    image = read_dicom_attenuation(ct_slice_path)
    sinogram = scan_image(image.mu, image.grid, get_profile("compact-head"), seed=0, source=image.source)
    assert sinogram.data.shape == (720, 512)
    assert sinogram.provenance["source"] == image.source
    recon = reconstruct(sinogram)
    y, x = np.mgrid[:128, :128]
    inside = (y - 64) ** 2 + (x - 64) ** 2 <= 60**2
    assert correlation(recon[inside], image.mu[inside]) >= 0.99


def test_phantom_scan_reconstruct_compare(patient: DigitalPatient, small_profile: ScannerProfile) -> None:
    size = 64
    truth = patient.image(size)
    grid = patient.grid(size)
    exact = patient.line_integrals(small_profile.geometry(grid))
    sinogram = scan_image(truth, grid, small_profile, seed=1, line_integrals=exact)
    recon_hu = to_hu(reconstruct(sinogram, filter_name="hann"))
    brain = ndimage.binary_erosion(np.abs(to_hu(truth) - 40.0) < 1.0, iterations=2)
    error = recon_hu[brain] - to_hu(truth)[brain]
    # Stated tolerance at 1e5 photons, 4 mm pixels: brain bias <= 5 HU, noise RMS <= 30 HU.
    assert abs(error.mean()) <= 5.0
    assert np.sqrt(np.mean(error**2)) <= 30.0


def test_same_seed_gives_the_same_scan(patient: DigitalPatient, small_profile: ScannerProfile) -> None:
    truth, grid = patient.image(64), patient.grid(64)
    a = scan_image(truth, grid, small_profile, seed=3)
    b = scan_image(truth, grid, small_profile, seed=3)
    c = scan_image(truth, grid, small_profile, seed=4)
    np.testing.assert_array_equal(a.data, b.data)
    assert not np.array_equal(a.data, c.data)


def test_scan_refuses_an_image_that_does_not_match_its_grid(
    patient: DigitalPatient, small_profile: ScannerProfile
) -> None:
    with pytest.raises(DataShapeError, match=r"image has shape \(32, 32\), expected the grid's"):
        scan_image(np.zeros((32, 32)), patient.grid(64), small_profile, seed=0)


def test_non_ct_dicom_is_refused() -> None:
    with pytest.raises(DicomFormatError, match="Modality is 'MR', expected 'CT'"):
        read_dicom_attenuation(str(get_testdata_file("MR_small.dcm")))


def test_non_dicom_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "slice.dcm"
    path.write_bytes(b"\x00" * 10)
    with pytest.raises(CorruptFileError, match=r"slice\.dcm: cannot be read as a DICOM image"):
        read_dicom_attenuation(path)


def test_missing_dicom_file(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError):
        read_dicom_attenuation(tmp_path / "none.dcm")
