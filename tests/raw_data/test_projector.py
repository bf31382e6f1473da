"""Forward projector and its adjoint: exactness against analytic line integrals, the
dot-product test, batching and differentiability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raw_data import (
    DataShapeError,
    DigitalPatient,
    FanBeamGeometry,
    Geometry,
    ParallelBeamGeometry,
    back_project,
    forward_project,
)


@pytest.fixture(params=["parallel", "fan"])
def geometry(
    request: pytest.FixtureRequest,
    parallel_geometry: ParallelBeamGeometry,
    fan_geometry: FanBeamGeometry,
) -> Geometry:
    return parallel_geometry if request.param == "parallel" else fan_geometry


def test_adjoint_passes_the_dot_product_test(geometry: Geometry) -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, *geometry.image.shape, generator=gen, dtype=torch.float64)
    y = torch.rand(2, *geometry.sinogram_shape, generator=gen, dtype=torch.float64)
    lhs = float((forward_project(x, geometry) * y).sum())
    rhs = float((x * back_project(y, geometry)).sum())
    assert abs(lhs - rhs) / abs(lhs) <= 1e-4


def test_adjoint_passes_the_dot_product_test_in_float32(geometry: Geometry) -> None:
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(*geometry.image.shape, generator=gen)
    y = torch.rand(*geometry.sinogram_shape, generator=gen)
    lhs = float((forward_project(x, geometry).double() * y.double()).sum())
    rhs = float((x.double() * back_project(y, geometry).double()).sum())
    assert abs(lhs - rhs) / abs(lhs) <= 1e-4


def test_projection_matches_exact_line_integrals(geometry: Geometry, patient: DigitalPatient) -> None:
    size = geometry.image.shape[0]
    image = torch.as_tensor(patient.image(size, supersample=8))
    exact = patient.line_integrals(geometry)
    projected = forward_project(image, geometry).numpy()
    # Stated tolerance: 3% relative RMS with 4 mm pixels. The residual is the pixelisation of
    # the 1000 HU skull edge (about 2% here); it halves each time the pixel size halves.
    assert np.linalg.norm(projected - exact) / np.linalg.norm(exact) <= 0.03


def test_batched_projection_equals_projection_of_each_slice(geometry: Geometry) -> None:
    batch = torch.rand(3, *geometry.image.shape, generator=torch.Generator().manual_seed(3))
    together = forward_project(batch, geometry)
    assert together.shape == (3, *geometry.sinogram_shape)
    for k in range(3):
        torch.testing.assert_close(together[k], forward_project(batch[k], geometry))


def test_gradient_of_projection_is_the_adjoint(parallel_geometry: ParallelBeamGeometry) -> None:
    x = torch.rand(*parallel_geometry.image.shape, dtype=torch.float64, requires_grad=True)
    y = torch.rand(*parallel_geometry.sinogram_shape, dtype=torch.float64)
    (forward_project(x, parallel_geometry) * y).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, back_project(y, parallel_geometry))


def test_projector_and_adjoint_pass_gradcheck() -> None:
    from raw_data import fan_beam

    small = fan_beam(12, 10, 2.0, 40.0, 80.0, (6, 7), 1.0)
    image = torch.rand(6, 7, dtype=torch.float64, requires_grad=True)
    sino = torch.rand(12, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: forward_project(z, small), (image,))
    assert torch.autograd.gradcheck(lambda z: back_project(z, small), (sino,))


def test_projector_rejects_an_image_of_the_wrong_shape(parallel_geometry: ParallelBeamGeometry) -> None:
    with pytest.raises(DataShapeError, match=r"image has shape \(32, 32\), expected"):
        forward_project(torch.zeros(32, 32), parallel_geometry)


def test_projector_rejects_integer_images(parallel_geometry: ParallelBeamGeometry) -> None:
    with pytest.raises(DataShapeError, match="expected a floating dtype"):
        forward_project(torch.zeros(64, 64, dtype=torch.int32), parallel_geometry)
