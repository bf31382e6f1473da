"""The back-projector's first and second derivatives equal those of its own matrix, built column by column.

Back-projection is linear, y = A x, so the gradient of <A x, g> with respect to x is A^T g and the
derivative of that gradient, contracted with h, with respect to g is A h. A is assembled here from
the back-projections of unit sinograms (no autograd involved), so the expected derivatives come from
plain matrix products, not from the backward passes under test. The geometry is small enough for
this to take a fraction of a second (gradcheck and gradgradcheck on it take most of a minute).
"""

from __future__ import annotations

import pytest
import torch

from raw_data import parallel_beam
from raw_data.backprojection import parallel_backproject

# (views, detectors, pitch mm, image shape, pixel mm); an odd view count and a pixel larger than the pitch.
SPECS = [(5, 7, 1.0, (4, 5), 1.0), (6, 9, 0.8, (5, 5), 1.3)]


def _matrix(geometry) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Rows: the back-projection of each unit sinogram, flattened (n_views * n_detectors, rows * cols)."""
    n = geometry.sinogram_shape[0] * geometry.sinogram_shape[1]
    units = torch.eye(n, dtype=torch.float64).reshape(n, *geometry.sinogram_shape)
    with torch.no_grad():
        return torch.stack([parallel_backproject(u[None], geometry)[0].reshape(-1) for u in units])


@pytest.mark.parametrize("spec", SPECS)
def test_gradient_and_its_derivative_match_the_matrix(spec: tuple[int, int, float, tuple[int, int], float]) -> None:
    views, detectors, pitch, shape, pixel = spec
    geometry = parallel_beam(views, detectors, pitch, shape, pixel)
    a = _matrix(geometry)
    assert float(a.abs().sum()) > 0.0  # the geometry projects onto the image at all

    gen = torch.Generator().manual_seed(31)
    x = torch.randn(1, *geometry.sinogram_shape, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, *shape, generator=gen, dtype=torch.float64, requires_grad=True)
    h = torch.randn(1, *geometry.sinogram_shape, generator=gen, dtype=torch.float64)

    y = parallel_backproject(x, geometry)
    torch.testing.assert_close(y.detach().reshape(-1), a.T @ x.detach().reshape(-1), rtol=1e-10, atol=1e-10)

    (grad_x,) = torch.autograd.grad(y, x, g, create_graph=True)
    torch.testing.assert_close(grad_x.detach().reshape(-1), a @ g.detach().reshape(-1), rtol=1e-10, atol=1e-10)

    (grad_g,) = torch.autograd.grad((grad_x * h).sum(), g)
    torch.testing.assert_close(grad_g.reshape(-1), a.T @ h.reshape(-1), rtol=1e-10, atol=1e-10)
