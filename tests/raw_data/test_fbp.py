"""Filtered back-projection: agreement with scikit-image, accuracy against the phantom,
batching, differentiability and refusal of unsuitable input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.transform import iradon

from raw_data import (
    FILTERS,
    DataShapeError,
    DigitalPatient,
    FanBeamGeometry,
    Geometry,
    GeometryError,
    ParallelBeamGeometry,
    fan_beam,
    fbp,
    forward_project,
    parallel_beam,
    rasterize_ellipses,
    shepp_logan,
    to_hu,
)


def _inside(shape: tuple[int, int], margin: float) -> np.ndarray:
    rows, cols = shape
    y, x = np.mgrid[:rows, :cols]
    return (y - rows // 2) ** 2 + (x - cols // 2) ** 2 <= (min(shape) / 2 - margin) ** 2


@pytest.mark.parametrize("size", [127, 128])
@pytest.mark.parametrize("filter_name", FILTERS)
def test_fbp_agrees_with_skimage_iradon(size: int, filter_name: str) -> None:
    geometry = parallel_beam(180, size, 1.0, (size, size), 1.0)
    phantom = rasterize_ellipses(shepp_logan(size * 0.9), geometry.image)
    sinogram = forward_project(torch.as_tensor(phantom), geometry)
    ours = fbp(sinogram, geometry, filter_name).numpy()
    theirs = iradon(
        sinogram.numpy().T,  # skimage: (detectors, views), angles in degrees
        theta=np.degrees(geometry.angles),
        output_size=size,
        filter_name=filter_name,
        interpolation="linear",
        circle=True,
    )
    inside = _inside(phantom.shape, margin=2)
    diff = np.linalg.norm((ours - theirs)[inside]) / np.linalg.norm(theirs[inside])
    assert diff <= 0.01


@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_fbp_of_exact_sinogram_recovers_the_phantom(kind: str, patient: DigitalPatient) -> None:
    # Finer sampling than the shared fixtures: 2 mm pixels on the 256 mm head.
    size = 128
    geometry: Geometry
    if kind == "parallel":
        geometry = parallel_beam(360, 181, 2.0, (size, size), 2.0)
    else:
        geometry = fan_beam(720, 256, 2.4, 500.0, 900.0, (size, size), 2.0)
    truth = patient.image(size)
    recon = fbp(torch.as_tensor(patient.line_integrals(geometry)), geometry, "ramp").numpy()
    inside = _inside(truth.shape, margin=1)
    # Stated tolerances: relative RMS over the whole field <= 8% (skull edges dominate);
    # inside the brain, 3 pixels from any edge, RMS <= 2 HU and bias <= 0.5 HU.
    assert np.linalg.norm((recon - truth)[inside]) / np.linalg.norm(truth[inside]) <= 0.08
    brain = ndimage.binary_erosion(np.abs(to_hu(truth) - 40.0) < 1.0, iterations=3)
    error_hu = to_hu(recon)[brain] - to_hu(truth)[brain]
    assert np.sqrt(np.mean(error_hu**2)) <= 2.0
    assert abs(error_hu.mean()) <= 0.5


def test_batched_fbp_equals_fbp_of_each_slice(fan_geometry: FanBeamGeometry) -> None:
    batch = torch.rand(2, *fan_geometry.sinogram_shape, generator=torch.Generator().manual_seed(4))
    together = fbp(batch, fan_geometry, "hann")
    for k in range(2):
        torch.testing.assert_close(together[k], fbp(batch[k], fan_geometry, "hann"))


@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_fbp_is_differentiable(kind: str) -> None:
    geometry: Geometry
    if kind == "parallel":
        geometry = parallel_beam(12, 11, 1.0, (8, 9), 1.0)
    else:
        geometry = fan_beam(16, 13, 2.0, 40.0, 80.0, (8, 9), 1.0)
    sinogram = torch.rand(*geometry.sinogram_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: fbp(s, geometry, "shepp-logan"), (sinogram,))


def test_fbp_refuses_a_short_scan() -> None:
    geometry = parallel_beam(30, 21, 1.0, (16, 16), 1.0, span_rad=np.pi / 2)
    with pytest.raises(GeometryError, match=r"views cover 90\.0 degrees"):
        fbp(torch.zeros(30, 21), geometry)


def test_fbp_refuses_an_unknown_filter(parallel_geometry: ParallelBeamGeometry) -> None:
    with pytest.raises(GeometryError, match="filter 'hamming' is unknown"):
        fbp(torch.zeros(parallel_geometry.sinogram_shape), parallel_geometry, "hamming")


def test_fbp_refuses_a_sinogram_of_the_wrong_shape(parallel_geometry: ParallelBeamGeometry) -> None:
    with pytest.raises(DataShapeError, match=r"sinogram has shape \(91, 96\)"):
        fbp(torch.zeros(91, 96), parallel_geometry)
