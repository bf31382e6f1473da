"""Parallel-beam back-projector: the compiled CPU loops against the torch reference and a
direct pixel-by-pixel interpolation, their adjoint, gradients, and the memory they use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from raw_data import ParallelBeamGeometry, parallel_beam
from raw_data.backprojection import (
    _apply,
    _Backproject,
    _backproject_torch,
    _BackprojectAdjoint,
    _line_geometry,
    _Lines,
    _plan_lines,
    parallel_backproject,
)

# (views, detectors, pitch mm, image shape, pixel mm): odd view counts leave a view out of
# the loops' pairs and blocks; pixels larger than the pitch step over several detectors;
# the 21-detector case has pixels outside the detector, where the profile is zero.
GEOMETRIES = [
    (12, 11, 1.0, (8, 9), 1.0),
    (45, 61, 0.7, (33, 40), 1.3),
    (30, 21, 1.0, (40, 40), 1.0),
    (96, 91, 4.0, (64, 64), 4.0),
]


def _geometry(spec: tuple[int, int, float, tuple[int, int], float]) -> ParallelBeamGeometry:
    views, detectors, pitch, shape, pixel = spec
    return parallel_beam(views, detectors, pitch, shape, pixel)


def _mode(
    geometry: ParallelBeamGeometry, row_mode: bool, slices: int, dtype: torch.dtype, seed: int
) -> tuple[torch.Tensor, _Lines]:
    """Random profiles for the views of one mode, and their plan."""
    views, step, offset = _line_geometry(geometry, row_mode, torch.device("cpu"))
    gen = torch.Generator().manual_seed(seed)
    profiles = torch.randn(slices, views.numel(), geometry.n_detectors, generator=gen, dtype=dtype)
    rows, cols = geometry.image.shape
    return profiles, _plan_lines(step, offset, cols if row_mode else rows, profiles)


@pytest.mark.parametrize("spec", GEOMETRIES)
@pytest.mark.parametrize("row_mode", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_loops_match_the_torch_reference(
    spec: tuple[int, int, float, tuple[int, int], float], row_mode: bool, dtype: torch.dtype
) -> None:
    profiles, plan = _mode(_geometry(spec), row_mode, slices=3, dtype=dtype, seed=5)
    expected = _backproject_torch(profiles, plan)
    got = _apply(_Backproject, profiles, plan)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol * float(expected.abs().max()))


def _direct(filtered: np.ndarray, geometry: ParallelBeamGeometry) -> np.ndarray:
    """Back-project by interpolating every pixel's detector coordinate, one view at a time."""
    y, x = np.meshgrid(geometry.image.y_mm(), geometry.image.x_mm(), indexing="ij")
    n = geometry.n_detectors
    grid = np.arange(-1, n + 1)  # a zero sample on each side: linear ramps to zero
    image = np.zeros(geometry.image.shape)
    for theta, row in zip(geometry.angles, filtered, strict=True):
        u = (x * np.cos(theta) + y * np.sin(theta)) / geometry.detector_pitch_mm + n // 2
        image += np.interp(u, grid, np.concatenate([[0.0], row, [0.0]]), left=0.0, right=0.0)
    return image


@pytest.mark.parametrize("spec", GEOMETRIES)
def test_back_projection_is_linear_interpolation_of_every_pixel(
    spec: tuple[int, int, float, tuple[int, int], float],
) -> None:
    geometry = _geometry(spec)
    # A smooth profile: the scheme differs from plain linear interpolation only by rounding
    # the kinks at detector samples over 1/8 of a pixel step.
    u = np.arange(geometry.n_detectors) - geometry.n_detectors / 2
    phase = geometry.angles[:, None]
    filtered = np.cos(0.15 * u[None, :] + phase) * np.exp(-((u[None, :] / (0.3 * geometry.n_detectors)) ** 2))
    got = parallel_backproject(torch.as_tensor(filtered)[None], geometry)[0].numpy()
    expected = _direct(filtered, geometry)
    assert np.linalg.norm(got - expected) <= 2e-3 * np.linalg.norm(expected)


@pytest.mark.parametrize("row_mode", [True, False])
def test_compiled_adjoint_passes_the_dot_product_test(row_mode: bool) -> None:
    profiles, plan = _mode(_geometry(GEOMETRIES[1]), row_mode, slices=2, dtype=torch.float64, seed=6)
    lines = plan.fine.shape[2]
    grad = torch.randn(2, lines, plan.length, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    lhs = float((_apply(_Backproject, profiles, plan) * grad).sum())
    rhs = float((profiles * _apply(_BackprojectAdjoint, grad, plan)).sum())
    assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_back_projection_has_first_and_second_derivatives() -> None:
    geometry = _geometry(GEOMETRIES[0])
    filtered = torch.rand(2, *geometry.sinogram_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f: parallel_backproject(f, geometry), (filtered,))
    assert torch.autograd.gradgradcheck(lambda f: parallel_backproject(f, geometry), (filtered,))


def test_back_projection_gives_the_same_image_with_and_without_autograd() -> None:
    geometry = _geometry(GEOMETRIES[3])
    filtered = torch.randn(2, *geometry.sinogram_shape, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        untracked = parallel_backproject(filtered, geometry)
    tracked = parallel_backproject(filtered.clone().requires_grad_(True), geometry)
    torch.testing.assert_close(tracked.detach(), untracked, rtol=1e-6, atol=1e-5)


def test_back_projection_of_a_tracked_tensor_under_no_grad_is_plain() -> None:
    geometry = _geometry(GEOMETRIES[1])
    filtered = torch.randn(1, *geometry.sinogram_shape, generator=torch.Generator().manual_seed(9))
    expected = parallel_backproject(filtered, geometry)
    with torch.no_grad():
        got = parallel_backproject(filtered.clone().requires_grad_(True), geometry)
    assert not got.requires_grad
    torch.testing.assert_close(got, expected)


def test_back_projection_in_half_precision_takes_the_torch_path() -> None:
    geometry = _geometry(GEOMETRIES[3])
    filtered = torch.randn(1, *geometry.sinogram_shape, generator=torch.Generator().manual_seed(10))
    expected = parallel_backproject(filtered.double(), geometry)
    got = parallel_backproject(filtered.bfloat16(), geometry)
    assert got.dtype == torch.bfloat16
    assert torch.linalg.norm(got.double() - expected) <= 0.02 * torch.linalg.norm(expected)


def test_back_projection_keeps_no_intermediate_larger_than_a_few_images(
    parallel_geometry: ParallelBeamGeometry,
) -> None:
    # The earlier back-projector gathered 2 windows x 8 views per image line into one
    # buffer, 16 images large; its traffic through memory made it 2.4x slower on CPUs whose
    # last-level cache could not hold it. The loops now read a few views' profiles in place.
    filtered = torch.randn(1, *parallel_geometry.sinogram_shape)
    with torch.no_grad():
        parallel_backproject(filtered, parallel_geometry)  # numba compiles outside the profile
        with torch.profiler.profile(profile_memory=True) as prof:
            parallel_backproject(filtered, parallel_geometry)
    largest = max(e.cpu_memory_usage for e in prof.events())
    image_bytes = 4 * parallel_geometry.image.shape[0] * parallel_geometry.image.shape[1]
    assert 0 < largest <= 4 * image_bytes


def test_task_code_hash_covers_the_compiled_loops() -> None:
    # The CT tasks reach FBP; the loops decide its result, so their source is hashed too.
    from tasks import task_modules

    assert "raw_data._kernels" in task_modules("ct-image-lesion-v1")
    assert "raw_data._kernels" in task_modules("ct-sinogram-lesion-v1")


def test_importing_raw_data_does_not_load_numba() -> None:
    code = "import sys, raw_data; print('numba' in sys.modules)"
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_interpolation_is_linear_between_samples_and_ramps_to_zero_outside() -> None:
    from raw_data.backprojection import _interpolate

    gen = torch.Generator().manual_seed(12)
    profiles = torch.randn(2, 3, 7, generator=gen, dtype=torch.float64)  # (slices, views, detectors)
    # Every view at its own positions: on samples, between them, within one sample of either end
    # (where the profile falls linearly to zero) and far beyond.
    positions = torch.tensor([[-5.0, -1.0, -0.25, 0.0, 2.5, 6.0, 6.75, 7.0, 9.0],
                              [0.5, 1.0, 3.3, 5.9, -0.5, 6.5, 7.5, -2.0, 4.0],
                              [6.0, 0.0, 2.0, 1.25, 4.75, 3.0, 5.5, 100.0, -100.0]], dtype=torch.float64)
    got = _interpolate(profiles, positions.clone())
    grid = np.arange(-1, 8)  # a zero sample on each side
    for s in range(2):
        for v in range(3):
            padded = np.concatenate([[0.0], profiles[s, v].numpy(), [0.0]])
            expected = np.interp(positions[v].numpy(), grid, padded, left=0.0, right=0.0)
            np.testing.assert_allclose(got[s, v].numpy(), expected, rtol=1e-12, atol=1e-12)
