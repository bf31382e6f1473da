"""CT parts of the tasks: sinogram binning, the sparse back-projection, the model's FBP start,
the DICOM codec, and resampling to the model grid."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
import torch

from raw_data import Sinogram, fan_beam, fbp, make_patient
from raw_data.backprojection import fan_backproject
from tasks import TaskDataError
from tasks.backprojection import FanBackProjector
from tasks.ct import SOURCE_PROFILE, model_geometry, to_model_sinogram
from tasks.dicom_ct import read_ct_image, write_ct_image
from tasks.models import SinogramLesionNet
from tasks.mr_kspace import mr_image
from tasks.preprocess import resample_to_model_grid


@pytest.mark.parametrize("start_deg", [0.0, 90.6])
def test_full_resolution_compact_head_sinogram_bins_onto_the_model_samples(start_deg: float) -> None:
    patient = make_patient(3)
    full = fan_beam(720, 512, 1.2, 330.0, 600.0, (64, 64), 4.0, start_rad=math.radians(start_deg))
    sinogram = Sinogram(patient.line_integrals(full).astype(np.float32), full, SOURCE_PROFILE)
    binned = to_model_sinogram(sinogram, "test").numpy()
    expected = patient.line_integrals(model_geometry())
    assert binned.shape == (90, 128)
    assert float(np.abs(binned - expected).mean()) < 0.02  # line integrals reach 4.5


def test_sinogram_with_an_incompatible_sampling_is_refused() -> None:
    geometry = fan_beam(100, 128, 4.8, 330.0, 600.0, (64, 64), 4.0)
    sinogram = Sinogram(np.zeros(geometry.sinogram_shape, dtype=np.float32), geometry)
    with pytest.raises(TaskDataError, match="100 views x 128 detectors; this task needs 90 x 128 or an integer"):
        to_model_sinogram(sinogram, "test")


def test_sinogram_of_a_half_rotation_is_refused() -> None:
    geometry = fan_beam(180, 128, 4.8, 330.0, 600.0, (64, 64), 4.0, span_rad=math.pi)
    sinogram = Sinogram(np.zeros(geometry.sinogram_shape, dtype=np.float32), geometry)
    with pytest.raises(TaskDataError, match="not equally spaced over one full rotation"):
        to_model_sinogram(sinogram, "test")


def test_sparse_back_projection_matches_raw_data() -> None:
    geometry = model_geometry()
    projections = torch.randn(3, *geometry.sinogram_shape, generator=torch.Generator().manual_seed(0))
    expected = fan_backproject(projections, geometry) * (2 * math.pi / geometry.n_views)
    torch.testing.assert_close(FanBackProjector(geometry)(projections), expected, rtol=1e-4, atol=1e-9)


def test_back_projection_gradient_is_its_transpose() -> None:
    geometry = model_geometry()
    project = FanBackProjector(geometry)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(1, *geometry.sinogram_shape, generator=generator, requires_grad=True)
    y = torch.randn(1, *geometry.image.shape, generator=generator)
    (project(x) * y).sum().backward()
    assert x.grad is not None
    # <A x, y> == <x, A^T y> for any x, so the gradient of the first in x is A^T y.
    with torch.no_grad():
        assert float((project(x) * y).sum()) == pytest.approx(float((x * x.grad).sum()), rel=1e-4)


def test_sinogram_model_starts_as_filtered_back_projection() -> None:
    geometry = model_geometry()
    patient = make_patient(4)
    sinogram = torch.as_tensor(patient.line_integrals(geometry), dtype=torch.float32)
    model = SinogramLesionNet(geometry)
    with torch.no_grad():
        hann = model.reconstruct(sinogram[None, None])[0, 1]
        expected = fbp(sinogram, geometry, "hann", circle=False)
    torch.testing.assert_close(hann, expected, rtol=1e-3, atol=1e-5)


def test_ct_dicom_round_trips_hounsfield_units() -> None:
    hu = np.linspace(-1100.0, 3200.0, 12 * 10).reshape(12, 10)
    buffer = io.BytesIO()
    write_ct_image(buffer, hu, 0.7, patient_id="TEST-P0009", uid_source="round trip")
    buffer.seek(0)
    back = read_ct_image(buffer, "buffer")
    np.testing.assert_array_equal(back.hu, np.clip(np.rint(hu), -1024, 3071))
    assert back.pixel_size_mm == pytest.approx(0.7)


def test_same_uid_source_gives_the_same_uids() -> None:
    uids = []
    for _ in range(2):
        buffer = io.BytesIO()
        write_ct_image(buffer, np.zeros((4, 4)), 1.0, patient_id="TEST-P0001", uid_source="same")
        buffer.seek(0)
        ds = pydicom.dcmread(buffer)
        uids.append((ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID))
    assert uids[0] == uids[1]
    assert len(set(uids[0])) == 3


def test_non_dicom_bytes_are_refused() -> None:
    with pytest.raises(TaskDataError, match="buffer: cannot be read as a DICOM image"):
        read_ct_image(io.BytesIO(b"\x89HDF\r\n\x1a\n not dicom"), "buffer")


def test_resampling_keeps_physical_size() -> None:
    # A disc of radius 40 mm drawn on 0.5 mm pixels covers pi * (40 / 4)**2 model pixels.
    coords = (np.arange(512) - 256) * 0.5
    disc = (coords[:, None] ** 2 + coords[None, :] ** 2 <= 40.0**2).astype(np.float64)
    resampled = resample_to_model_grid(disc, 0.5, fill=0.0)
    assert resampled.shape == (64, 64)
    assert float(resampled.sum()) == pytest.approx(math.pi * 100, rel=0.02)
    assert float(resampled[32, 32]) == pytest.approx(1.0)


def test_resampling_pads_a_small_field_with_the_fill_value() -> None:
    resampled = resample_to_model_grid(np.zeros((16, 16)), 4.0, fill=-1000.0)
    assert float(resampled[0, 0]) == -1000.0
    assert float(resampled[32, 32]) == 0.0


def test_resampling_refuses_a_volume() -> None:
    with pytest.raises(TaskDataError, match=r"image has shape \(2, 4, 4\), expected one slice"):
        resample_to_model_grid(np.zeros((2, 4, 4)), 1.0, fill=0.0)


def test_mr_phantom_shows_the_lesion_against_brain() -> None:
    patient = make_patient(5, radius_mm=(10.0, 10.0), contrast_hu=(100.0, 100.0))
    image = mr_image(patient, 128)
    lesion = patient.lesion_mask(128)
    brain_level = 0.6
    assert abs(float(np.median(image[lesion])) - brain_level) == pytest.approx(0.4, abs=0.01)
