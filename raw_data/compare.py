"""Virtual comparative scanning: one digital patient, every scanner profile, one table.

Each profile scans the patient (exact line integrals of the ellipse phantom, so the
projector being tested is not also the one that made the data), adds its own noise and
blur, and is reconstructed by FBP on the same grid. Reconstructions are compared with the
ground truth in Hounsfield units: PSNR, SSIM and the lesion's contrast-to-noise ratio.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from raw_data._files import atomic_target
from raw_data.metrics import lesion_cnr, psnr, ssim
from raw_data.phantoms import MU_WATER_PER_MM, DigitalPatient
from raw_data.scanners import get_profile, profile_names
from raw_data.virtual_scan import reconstruct, scan_image

__all__ = ["Comparison", "ProfileScore", "compare_profiles", "format_table", "write_panel"]

BRAIN_WINDOW_HU = (-20.0, 100.0)


def to_hu(mu: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Convert attenuation (1/mm) to Hounsfield units."""
    return (np.asarray(mu, dtype=np.float64) / MU_WATER_PER_MM - 1.0) * 1000.0


@dataclass(frozen=True)
class ProfileScore:
    """Image quality of one profile's reconstruction (PSNR dB, SSIM, lesion CNR)."""

    profile: str
    psnr_db: float
    ssim: float
    lesion_cnr: float


@dataclass(frozen=True, eq=False)
class Comparison:
    """Result of :func:`compare_profiles`; images in HU, ``(size, size)``."""

    patient: DigitalPatient
    ground_truth_hu: npt.NDArray[np.float64]
    reconstructions_hu: dict[str, npt.NDArray[np.float64]]
    scores: tuple[ProfileScore, ...]


def compare_profiles(
    patient: DigitalPatient,
    size: int,
    *,
    profiles: Sequence[str] | None = None,
    seed: int = 0,
    dose_factor: float = 1.0,
    filter_name: str = "hann",
) -> Comparison:
    """Scan one patient with several scanner profiles and score each reconstruction.

    Parameters:
        patient: the digital patient (attenuation ellipses, lesions).
        size: image side in pixels; the grid spans ``patient.fov_mm``.
        profiles: profile names; all profiles when None.
        seed: seed of every profile's noise.
        dose_factor: multiplies each profile's incident flux.
        filter_name: FBP filter.

    Returns:
        Ground truth, reconstructions (HU) and a score per profile; the CNR is ``nan``
        for a patient without lesions.

    Raises:
        ProfileNotFoundError: an unknown profile name.
        GeometryError: the patient's grid does not fit a scanner.
    """
    names = tuple(profiles) if profiles is not None else profile_names()
    chosen = [get_profile(n) for n in names]
    grid = patient.grid(size)
    truth = patient.image(size)
    truth_hu = to_hu(truth)
    mask = patient.lesion_mask(size)
    recon: dict[str, npt.NDArray[np.float64]] = {}
    scores = []
    for profile in chosen:
        exact = patient.line_integrals(profile.geometry(grid))
        sinogram = scan_image(
            truth,
            grid,
            profile,
            seed=seed,
            dose_factor=dose_factor,
            source=patient.description,
            line_integrals=exact,
        )
        image = to_hu(reconstruct(sinogram, filter_name=filter_name))
        recon[profile.name] = image
        cnr = lesion_cnr(image, mask) if mask.any() else math.nan
        scores.append(ProfileScore(profile.name, psnr(image, truth_hu), ssim(image, truth_hu), cnr))
    return Comparison(patient, truth_hu, recon, tuple(scores))


def format_table(comparison: Comparison) -> str:
    """Return the scores as an aligned plain-text table, one row per profile."""
    head = f"{'profile':<18} {'PSNR [dB]':>10} {'SSIM':>7} {'lesion CNR':>11}"
    rows = [head, "-" * len(head)]
    for s in comparison.scores:
        cnr = "-" if math.isnan(s.lesion_cnr) else f"{s.lesion_cnr:.2f}"
        rows.append(f"{s.profile:<18} {s.psnr_db:>10.2f} {s.ssim:>7.3f} {cnr:>11}")
    return "\n".join(rows)


def write_panel(
    comparison: Comparison,
    path: str | os.PathLike[str],
    *,
    window_hu: tuple[float, float] = BRAIN_WINDOW_HU,
) -> None:
    """Write a PNG panel: ground truth, then each profile's reconstruction, same window.

    Parameters:
        comparison: the result of :func:`compare_profiles`.
        path: destination ``.png`` (written atomically).
        window_hu: display window (low, high), HU.
    """
    # Imported here: plotting is the only part of the library that needs matplotlib, and
    # the Agg backend must be chosen before pyplot loads, so no display is ever needed.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("ground truth", comparison.ground_truth_hu, "")]
    for s in comparison.scores:
        cnr = "" if math.isnan(s.lesion_cnr) else f", CNR {s.lesion_cnr:.1f}"
        detail = f"PSNR {s.psnr_db:.1f} dB, SSIM {s.ssim:.3f}{cnr}"
        panels.append((s.profile, comparison.reconstructions_hu[s.profile], detail))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.9))
    for ax, (title, image, detail) in zip(np.atleast_1d(axes), panels, strict=True):
        ax.imshow(image, cmap="gray", vmin=window_hu[0], vmax=window_hu[1])
        ax.set_title(f"{title}\n{detail}", fontsize=8)
        ax.axis("off")
    fig.suptitle(
        f"{comparison.patient.description}; window {window_hu[0]:.0f}..{window_hu[1]:.0f} HU",
        fontsize=9,
    )
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.93))
    try:
        with atomic_target(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        plt.close(fig)
