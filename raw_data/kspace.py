"""Multi-coil 2D Cartesian MRI k-space: the container, coil maps, sampling masks, simulation.

Axis order everywhere: k-space ``(coils, phase_encodes, readout)``; images
``(rows, cols)`` with rows along the phase-encoding direction (y) and columns along the
readout (x). The Fourier transform is centred and unitary (``norm="ortho"``), so a noise
standard deviation means the same in k-space and in the image.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from raw_data.errors import DataShapeError, PhantomError
from raw_data.sinogram import check_finite

__all__ = [
    "KSpace",
    "cartesian_mask",
    "coil_sensitivities",
    "fft2c",
    "ifft2c",
    "simulate_kspace",
]

Complex = npt.NDArray[np.complex64]
Mask = npt.NDArray[np.bool_]


def fft2c(image: npt.NDArray[np.complexfloating]) -> npt.NDArray[np.complexfloating]:
    """Return the centred, unitary 2D FFT over the last two axes."""
    shifted = np.fft.ifftshift(image, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(shifted, norm="ortho"), axes=(-2, -1))


def ifft2c(kspace: npt.NDArray[np.complexfloating]) -> npt.NDArray[np.complexfloating]:
    """Return the centred, unitary 2D inverse FFT over the last two axes."""
    shifted = np.fft.ifftshift(kspace, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(shifted, norm="ortho"), axes=(-2, -1))


@dataclass(frozen=True, eq=False)
class KSpace:
    """One 2D multi-coil Cartesian k-space slice.

    Attributes:
        data: complex64 ``(coils, phase_encodes, readout)`` on the encoded matrix (readout
            may be oversampled); lines not acquired are zero.
        imaging: bool ``(phase_encodes,)``, lines of the undersampling pattern.
        calibration: bool ``(phase_encodes,)``, fully sampled calibration (ACS) lines.
        recon_shape: ``(rows, cols)`` of the reconstructed image.
        fov_mm: reconstructed field of view ``(phase, readout)``, mm.
        acceleration: nominal acceleration factor along phase encoding.
        coil_maps: complex64 ``(coils, rows, cols)`` sensitivities, when known.
        reference: complex64 ``(rows, cols)`` ground-truth image, when known.
        provenance: free-form strings.
        repetitions: the ISMRMRD repetitions whose lines this k-space holds (``(0,)`` for
            simulated data); several when interleaved passes were combined.
        read_note: how the data were selected from their file (which repetitions and
            why), empty for simulated data.
    """

    data: Complex
    imaging: Mask
    calibration: Mask
    recon_shape: tuple[int, int]
    fov_mm: tuple[float, float] = (256.0, 256.0)
    acceleration: int = 1
    coil_maps: Complex | None = None
    reference: Complex | None = None
    provenance: Mapping[str, str] = field(default_factory=dict)
    repetitions: tuple[int, ...] = (0,)
    read_note: str = ""

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise DataShapeError(f"k-space has {data.ndim} dimensions, expected 3 (coils, phase_encodes, readout)")
        check_finite(data, "k-space")
        lines = data.shape[1]
        for name in ("imaging", "calibration"):
            mask = np.asarray(getattr(self, name), dtype=bool)
            if mask.shape != (lines,):
                raise DataShapeError(f"{name} mask has shape {mask.shape}, expected ({lines},)")
            object.__setattr__(self, name, mask)
        rows, cols = self.recon_shape
        if not (0 < rows <= data.shape[1] and 0 < cols <= data.shape[2]):
            raise DataShapeError(f"recon_shape {self.recon_shape} does not fit the encoded matrix {data.shape[1:]}")
        object.__setattr__(self, "data", data.astype(np.complex64, copy=False))
        if self.coil_maps is not None:
            maps = np.asarray(self.coil_maps, dtype=np.complex64)
            if maps.shape != (data.shape[0], rows, cols):
                raise DataShapeError(
                    f"coil maps have shape {maps.shape}, expected (coils, rows, cols) = {(data.shape[0], rows, cols)}"
                )
            check_finite(maps, "coil maps")
            object.__setattr__(self, "coil_maps", maps)
        if self.reference is not None:
            ref = np.asarray(self.reference, dtype=np.complex64)
            if ref.shape != (rows, cols):
                raise DataShapeError(f"reference has shape {ref.shape}, expected {(rows, cols)}")
            object.__setattr__(self, "reference", ref)
        object.__setattr__(self, "provenance", {str(k): str(v) for k, v in self.provenance.items()})

    @property
    def n_coils(self) -> int:
        """Number of receive coils."""
        return int(self.data.shape[0])

    @property
    def sampled(self) -> Mask:
        """Lines acquired at all (imaging or calibration), bool ``(phase_encodes,)``."""
        return self.imaging | self.calibration

    @property
    def readout_oversampling(self) -> float:
        """Encoded readout samples per reconstructed column."""
        return float(self.data.shape[2] / self.recon_shape[1])


def coil_sensitivities(shape: tuple[int, int], n_coils: int) -> Complex:
    """Return smooth complex receive sensitivities of coils placed around the field of view.

    Each coil is a small loop on a circle 1.5 times the half field of view: its magnitude
    falls off with distance and its phase follows the direction from the coil, as in the
    usual birdcage model. Maps are normalised so their root-sum-of-squares is 1 everywhere,
    which makes coil combination and root-sum-of-squares agree on noiseless data.

    Parameters:
        shape: image ``(rows, cols)``.
        n_coils: number of coils (>= 1).

    Returns:
        complex64 ``(coils, rows, cols)``.

    Raises:
        PhantomError: ``n_coils`` < 1.
    """
    if n_coils < 1:
        raise PhantomError(f"n_coils is {n_coils}, expected >= 1")
    rows, cols = shape
    y = (rows // 2 - np.arange(rows))[:, None] / (rows / 2)
    x = (np.arange(cols) - cols // 2)[None, :] / (cols / 2)
    maps = np.empty((n_coils, rows, cols), dtype=np.complex128)
    for c in range(n_coils):
        angle = 2 * math.pi * c / n_coils
        dx, dy = x - 1.5 * math.cos(angle), y - 1.5 * math.sin(angle)
        maps[c] = (dx + 1j * dy) / (dx**2 + dy**2)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0, keepdims=True))
    return maps.astype(np.complex64)


def cartesian_mask(
    lines: int,
    acceleration: int,
    calibration_lines: int,
    *,
    pattern: str = "equispaced",
    seed: int = 0,
) -> tuple[Mask, Mask]:
    """Return the imaging and calibration line masks of an undersampled Cartesian scan.

    Parameters:
        lines: phase-encoding lines of the full matrix.
        acceleration: keep one line in ``acceleration`` (1 = fully sampled).
        calibration_lines: fully sampled lines around the k-space centre (ACS).
        pattern: ``"equispaced"`` (every R-th line through the centre) or ``"random"``
            (the same number of lines drawn uniformly with ``seed``).
        seed: seed of the random pattern.

    Returns:
        ``(imaging, calibration)``, bool arrays of shape ``(lines,)``.

    Raises:
        PhantomError: a non-positive count, too many calibration lines, or unknown pattern.
    """
    if lines < 1 or acceleration < 1:
        raise PhantomError(f"lines {lines} and acceleration {acceleration} must be >= 1")
    if not 0 <= calibration_lines <= lines:
        raise PhantomError(f"calibration_lines is {calibration_lines}, expected 0..{lines}")
    centre = lines // 2
    imaging = np.zeros(lines, dtype=bool)
    if pattern == "equispaced":
        imaging[centre % acceleration :: acceleration] = True
    elif pattern == "random":
        chosen = np.random.default_rng(seed).choice(lines, math.ceil(lines / acceleration), replace=False)
        imaging[chosen] = True
    else:
        raise PhantomError(f"pattern {pattern!r} is unknown; use 'equispaced' or 'random'")
    calibration = np.zeros(lines, dtype=bool)
    start = centre - calibration_lines // 2
    calibration[start : start + calibration_lines] = True
    return imaging, calibration


def simulate_kspace(
    image: npt.NDArray[np.number],
    coil_maps: Complex,
    *,
    acceleration: int = 1,
    calibration_lines: int = 0,
    noise_std: float = 0.0,
    seed: int = 0,
    readout_oversampling: int = 1,
    fov_mm: tuple[float, float] = (256.0, 256.0),
    pattern: str = "equispaced",
) -> KSpace:
    """Simulate multi-coil Cartesian k-space of an image, undersampled and noisy.

    Parameters:
        image: real or complex ``(rows, cols)`` object (e.g. proton density).
        coil_maps: complex ``(coils, rows, cols)`` receive sensitivities.
        acceleration: undersampling factor along phase encoding.
        calibration_lines: fully sampled centre lines (ACS).
        noise_std: standard deviation of complex Gaussian noise per sample (image units,
            split equally between real and imaginary parts).
        seed: seed of the noise (and of a random pattern).
        readout_oversampling: integer readout oversampling (2 doubles the readout FOV).
        fov_mm: reconstructed field of view ``(phase, readout)``, mm.
        pattern: ``"equispaced"`` or ``"random"``, see :func:`cartesian_mask`.

    Returns:
        The k-space, carrying ``coil_maps`` and ``image`` as reference.

    Raises:
        DataShapeError: image or maps of the wrong rank or shape.
        NonFiniteDataError: NaN or inf in the image or maps.
        PhantomError: invalid sampling parameters.
    """
    obj = np.asarray(image)
    maps = np.asarray(coil_maps)
    if obj.ndim != 2 or maps.ndim != 3 or maps.shape[1:] != obj.shape:
        raise DataShapeError(
            f"image {obj.shape} and coil maps {maps.shape} must be (rows, cols) and "
            "(coils, rows, cols) with the same rows and cols"
        )
    check_finite(obj, "image")
    check_finite(maps, "coil maps")
    if readout_oversampling < 1 or noise_std < 0:
        raise PhantomError("readout_oversampling must be >= 1 and noise_std >= 0")
    rows, cols = obj.shape
    coil_images = maps * obj[None]
    extra = cols * (readout_oversampling - 1)
    padded = np.pad(coil_images, ((0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    kspace = fft2c(padded)
    if noise_std > 0:
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
        kspace = kspace + noise * (noise_std / math.sqrt(2))
    imaging, calibration = cartesian_mask(rows, acceleration, calibration_lines, pattern=pattern, seed=seed)
    kspace[:, ~(imaging | calibration), :] = 0
    return KSpace(
        data=kspace.astype(np.complex64),
        imaging=imaging,
        calibration=calibration,
        recon_shape=(rows, cols),
        fov_mm=fov_mm,
        acceleration=acceleration,
        coil_maps=maps.astype(np.complex64),
        reference=obj.astype(np.complex64),
        provenance={"noise_std": repr(noise_std), "noise_seed": str(seed), "pattern": pattern},
    )
