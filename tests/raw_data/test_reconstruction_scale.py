"""Reconstructions come out in absolute units: FBP in HU, MR magnitude in the object's intensity.

Correlation with the truth does not see a wrong scale (a filter 1 % too strong correlates as well as the
right one), so these tests compare values. The data are computed here, not by the package: the CT
phantom is concentric discs whose line integrals have a closed form (a disc of radius R gives the
chord ``2 sqrt(R^2 - t^2)`` at distance ``t`` from its centre, averaged over the detector element's
width), and the MR k-space is the test's own unitary FFT of an image it draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
import torch

from raw_data import (
    MU_WATER_PER_MM,
    FanBeamGeometry,
    Geometry,
    ImageGrid,
    KSpace,
    coil_sensitivities,
    fan_beam,
    fbp,
    forward_project,
    parallel_beam,
    rasterize_ellipses,
    reconstruct_kspace,
    shepp_logan,
    simulate_kspace,
)

# --- CT: a water cylinder with an air ring and a bone core, all on the rotation axis --------------------------

# (outer radius mm, HU inside up to the next smaller radius); outside the largest radius: air.
WATER, AIR, BONE = 0.0, -1000.0, 1000.0
LAYERS = ((100.0, WATER), (60.0, AIR), (32.0, BONE))
OUTSIDE = AIR
# Stated tolerance on each region's mean HU (measured error of the unmutated code: at most 2.5 HU, bone
# under the plain ramp). A filter scaled by 1 % moves water by 10 HU and bone by 20 HU.
TOLERANCE_HU = 4.0
# Region edges are avoided by this margin, mm (two 4 mm pixels and a bit: FBP blurs edges over a few pixels).
MARGIN_MM = 9.0
SUBSAMPLES = 64  # points across a detector element's width


def _mu(hu: float) -> float:
    """Linear attenuation of a material of ``hu`` Hounsfield units, 1/mm (HU's definition)."""
    return MU_WATER_PER_MM * (1.0 + hu / 1000.0)


def _disc_chords(t_mm: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Line integral through the layered phantom at distance ``t_mm`` from its centre (dimensionless)."""
    total = np.zeros_like(t_mm)
    outer_mu = _mu(OUTSIDE)
    # Each layer adds (its mu - the mu of the layer around it) over a full disc of its radius.
    for radius, hu in LAYERS:
        total += (_mu(hu) - outer_mu) * 2.0 * np.sqrt(np.clip(radius**2 - t_mm**2, 0.0, None))
        outer_mu = _mu(hu)
    return total


def _detector_average(
    centres: npt.NDArray[np.float64], width: float, to_t: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]
) -> npt.NDArray[np.float64]:
    """Average the line integral over each detector element (``to_t`` maps a detector coordinate to t)."""
    offsets = ((np.arange(SUBSAMPLES) + 0.5) / SUBSAMPLES - 0.5) * width
    samples = [_disc_chords(to_t(centres + o)) for o in offsets]
    return np.mean(samples, axis=0)


def _sinogram(kind: str) -> tuple[Geometry, torch.Tensor]:
    """The phantom's sinogram, computed in closed form for the geometry's definition of its detectors."""
    n_views, pixel = 96, 4.0
    if kind == "parallel":
        n_det, pitch = 91, 4.0
        geometry: Geometry = parallel_beam(n_views, n_det, pitch, (64, 64), pixel)
        # Detector k at t = (k - n // 2) * pitch.
        centres = (np.arange(n_det) - n_det // 2) * pitch
        row = _detector_average(centres, pitch, lambda t: t)
    else:
        n_det, pitch, d_iso, d_det = 128, 4.8, 500.0, 900.0
        geometry = fan_beam(2 * n_views, n_det, pitch, d_iso, d_det, (64, 64), pixel)
        # Equiangular arc: detector k at fan angle gamma = (k - n // 2) * pitch / d_det; its ray passes
        # the rotation axis at t = d_iso * sin(gamma).
        pitch_rad = pitch / d_det
        centres = (np.arange(n_det) - n_det // 2) * pitch_rad
        row = _detector_average(centres, pitch_rad, lambda g: d_iso * np.sin(g))
    # Rotationally symmetric: every view sees the same projection.
    return geometry, torch.as_tensor(np.tile(row, (geometry.n_views, 1)))


def _radius_mm(shape: tuple[int, int], pixel: float) -> npt.NDArray[np.float64]:
    rows, cols = shape
    x = (np.arange(cols) - cols // 2) * pixel
    y = (rows // 2 - np.arange(rows)) * pixel
    xx, yy = np.meshgrid(x, y)
    return np.asarray(np.hypot(xx, yy))


def _regions() -> list[tuple[str, float, float, float]]:
    """(name, inner radius, outer radius, HU) of each region; the outside air up to the reconstructed circle."""
    radii = [r for r, _ in LAYERS]
    out = [("outside air", radii[0], 128.0, OUTSIDE)]
    for k, (radius, hu) in enumerate(LAYERS):
        inner = radii[k + 1] if k + 1 < len(radii) else 0.0
        out.append((f"{hu:+.0f} HU layer", inner, radius, hu))
    return out


@pytest.mark.parametrize("filter_name", ["ramp", "shepp-logan"])
@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_fbp_gives_each_region_its_hounsfield_value(kind: str, filter_name: str) -> None:
    geometry, sinogram = _sinogram(kind)
    image = fbp(sinogram, geometry, filter_name).numpy()
    hu = (image / MU_WATER_PER_MM - 1.0) * 1000.0
    radius = _radius_mm(geometry.image.shape, geometry.image.pixel_size_mm)
    errors = {}
    for name, inner, outer, truth in _regions():
        # The circle's edge (128 mm) is no material edge: only a pixel's half diagonal is kept clear of it.
        clear = 3.0 if outer == 128.0 else MARGIN_MM
        region = (radius > inner + MARGIN_MM) & (radius < outer - clear)
        assert region.sum() >= 30, f"region {name} has only {region.sum()} pixels"
        errors[name] = round(float(hu[region].mean()) - truth, 2)
    assert all(abs(e) <= TOLERANCE_HU for e in errors.values()), f"mean HU minus truth per region: {errors}"


def _rasterized(geometry: Geometry, subsamples: int = 8) -> npt.NDArray[np.float64]:
    """The layered phantom on the geometry's grid, 1/mm: each pixel the mean of subsamples x subsamples points."""
    rows, cols = geometry.image.shape
    pixel = geometry.image.pixel_size_mm
    offsets = ((np.arange(subsamples) + 0.5) / subsamples - 0.5) * pixel
    image = np.zeros((rows, cols))
    for dx in offsets:
        for dy in offsets:
            xx, yy = np.meshgrid((np.arange(cols) - cols // 2) * pixel + dx, (rows // 2 - np.arange(rows)) * pixel + dy)
            radius = np.hypot(xx, yy)
            mu = np.full((rows, cols), _mu(OUTSIDE))
            for outer, hu in LAYERS:  # from the outside in, each layer overwrites the disc it fills
                mu[radius < outer] = _mu(hu)
            image += mu
    return image / subsamples**2


@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_projector_conserves_the_attenuation_in_every_view(kind: str) -> None:
    # Every view integrates the whole object: the integral of a projection over the detector equals the integral of
    # the image over the plane (for the equiangular fan, dt = D cos(gamma) dgamma). Measured agreement: 0.13 %.
    geometry, _ = _sinogram(kind)
    image = _rasterized(geometry)
    projections = forward_project(torch.as_tensor(image), geometry).numpy()
    total = image.sum() * geometry.image.pixel_size_mm**2
    if isinstance(geometry, FanBeamGeometry):
        gamma = (np.arange(geometry.n_detectors) - geometry.n_detectors // 2) * geometry.angular_pitch_rad
        weight = geometry.source_to_isocenter_mm * np.cos(gamma) * geometry.angular_pitch_rad
        per_view = (projections * weight).sum(axis=1)
    else:
        per_view = projections.sum(axis=1) * geometry.detector_pitch_mm
    np.testing.assert_allclose(per_view, total, rtol=0.004)


@pytest.mark.parametrize("kind", ["parallel", "fan"])
def test_projection_then_fbp_gives_each_region_its_hounsfield_value(kind: str) -> None:
    # The package's own projector feeding FBP: the same regions, the same tolerance as from the closed form.
    geometry, _ = _sinogram(kind)
    sinogram = forward_project(torch.as_tensor(_rasterized(geometry)), geometry)
    hu = (fbp(sinogram, geometry).numpy() / MU_WATER_PER_MM - 1.0) * 1000.0
    radius = _radius_mm(geometry.image.shape, geometry.image.pixel_size_mm)
    errors = {}
    for name, inner, outer, truth in _regions():
        clear = 3.0 if outer == 128.0 else MARGIN_MM
        region = (radius > inner + MARGIN_MM) & (radius < outer - clear)
        errors[name] = round(float(hu[region].mean()) - truth, 2)
    assert all(abs(e) <= TOLERANCE_HU for e in errors.values()), f"mean HU minus truth per region: {errors}"


def test_fbp_scales_linearly_with_the_line_integrals() -> None:
    # Half the attenuation everywhere: every pixel halves (water at -500 HU), no offset.
    geometry, sinogram = _sinogram("parallel")
    full = fbp(sinogram, geometry).numpy()
    half = fbp(sinogram / 2, geometry).numpy()
    np.testing.assert_allclose(half, full / 2, rtol=1e-6, atol=1e-9)


# --- MR: k-space of a known image, transformed here -------------------------------------------------------------

ROWS, COLS = 64, 48
CORE, RING = 1.0, 0.3  # intensities of the drawn object


def _object() -> npt.NDArray[np.complex128]:
    """A disc of intensity 0.3 (radius 20 px) with a core of 1.0 (radius 8 px) and a phase ramp."""
    y, x = np.mgrid[:ROWS, :COLS]
    r = np.hypot(y - ROWS // 2, x - COLS // 2)
    magnitude = np.where(r < 8, CORE, np.where(r < 20, RING, 0.0))
    return magnitude * np.exp(1j * 0.02 * (x - COLS // 2))


def _unitary_kspace(images: npt.NDArray[np.complex128]) -> npt.NDArray[np.complex128]:
    """Centred 2D DFT over the last two axes, divided by sqrt(number of samples) (Parseval holds)."""
    n = images.shape[-1] * images.shape[-2]
    centred = np.fft.ifftshift(images, axes=(-2, -1))
    return np.asarray(np.fft.fftshift(np.fft.fft2(centred), axes=(-2, -1)) / np.sqrt(n))


def _maps() -> npt.NDArray[np.complex128]:
    """Three coils with smooth, unnormalised sensitivities (their root-sum-of-squares is not 1)."""
    y, x = np.mgrid[:ROWS, :COLS] / 64.0
    return np.stack(
        [
            (0.5 + x) * np.exp(0.3j),
            (1.5 - y) * np.exp(-1.1j),
            0.8 * (1 + 0.5 * x * y) * np.exp(2.0j),
        ]
    )


def _kspace(images: npt.NDArray[np.complex128], oversampling: int, maps: npt.NDArray[np.complex128] | None) -> KSpace:
    extra = COLS * (oversampling - 1)
    # Readout oversampling: the object sits in the middle of a wider readout field of view.
    padded = np.pad(images, ((0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    lines = np.ones(ROWS, dtype=bool)
    return KSpace(_unitary_kspace(padded), lines, np.zeros(ROWS, dtype=bool), (ROWS, COLS), coil_maps=maps)


@pytest.mark.parametrize("oversampling", [1, 2])
@pytest.mark.parametrize("value", [1.0, 0.37, 250.0])
def test_constant_image_reconstructs_to_its_value(value: float, oversampling: int) -> None:
    # A constant object fills k-space's centre sample only, with value * sqrt(samples) (unitary DFT).
    width = COLS * oversampling
    data = np.zeros((1, ROWS, width), dtype=np.complex64)
    data[0, ROWS // 2, width // 2] = value * np.sqrt(ROWS * width)
    kspace = KSpace(data, np.ones(ROWS, dtype=bool), np.zeros(ROWS, dtype=bool), (ROWS, COLS))
    image = reconstruct_kspace(kspace, method="rss")
    np.testing.assert_allclose(image, value, rtol=1e-5)


@pytest.mark.parametrize("oversampling", [1, 2])
def test_coil_map_reconstruction_returns_the_object_magnitude(oversampling: int) -> None:
    truth, maps = _object(), _maps()
    image = reconstruct_kspace(_kspace(maps * truth[None], oversampling, maps), method="coil-maps")
    np.testing.assert_allclose(image, np.abs(truth), atol=2e-5)
    y, x = np.mgrid[:ROWS, :COLS]
    r = np.hypot(y - ROWS // 2, x - COLS // 2)
    assert float(image[r < 7].mean()) == pytest.approx(CORE, abs=1e-4)
    assert float(image[(r > 9) & (r < 19)].mean()) == pytest.approx(RING, abs=1e-4)
    assert float(image[r > 21].max()) <= 1e-4


def test_root_sum_of_squares_is_the_object_times_the_coils_combined_sensitivity() -> None:
    truth, maps = _object(), _maps()
    image = reconstruct_kspace(_kspace(maps * truth[None], 1, None), method="rss")
    expected = np.abs(truth) * np.sqrt((np.abs(maps) ** 2).sum(axis=0))
    np.testing.assert_allclose(image, expected, atol=2e-5)


@pytest.mark.parametrize("method", ["rss", "coil-maps"])
def test_simulated_phantom_reconstructs_to_its_own_values(method: str) -> None:
    # The package's own simulation and reconstruction together, no normalisation: every pixel within 1e-4 of the
    # phantom, and the modified Shepp-Logan head's brain at its defined 0.2 (skull 1.0 minus 0.8).
    phantom = rasterize_ellipses(shepp_logan(256.0), ImageGrid((96, 96), 256.0 / 96))
    image = reconstruct_kspace(simulate_kspace(phantom, coil_sensitivities((96, 96), 8)), method=method)
    np.testing.assert_allclose(image, phantom, atol=1e-4)
    assert float(image[47:50, 47:50].mean()) == pytest.approx(0.2, abs=1e-4)  # 3 x 3 at the centre: brain only
