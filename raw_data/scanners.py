"""Scanner profiles: "virtual twins" of CT scanner models, selectable by name.

Each profile fixes what distinguishes one scanner model's raw data from another's: fan-beam
geometry (source and detector distances, detector count and pitch, views per rotation), the
dose (incident photons per element per view), electronic noise and detector blur. The
geometries follow values published for scanners of each class, rounded; they are stand-ins
for comparison studies, not vendor specifications.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from raw_data.errors import GeometryError, ProfileNotFoundError
from raw_data.geometry import FanBeamGeometry, ImageGrid, fan_beam

__all__ = ["PROFILES", "ScannerProfile", "get_profile", "profile_names"]


@dataclass(frozen=True)
class ScannerProfile:
    """One scanner model's acquisition and detector parameters.

    Attributes:
        name: short identifier used on the command line and in files.
        description: what the profile stands for.
        n_detectors: detector elements in the row.
        detector_pitch_mm: element spacing along the detector arc, mm.
        n_views: views per 360-degree rotation.
        source_to_isocenter_mm: source to rotation axis, mm.
        source_to_detector_mm: source to detector, mm.
        incident_flux: unattenuated photons per element per view at the reference dose.
        electronic_noise: read-out noise standard deviation, photon counts.
        detector_blur_fwhm: detector cross-talk, FWHM in detector elements.
    """

    name: str
    description: str
    n_detectors: int
    detector_pitch_mm: float
    n_views: int
    source_to_isocenter_mm: float
    source_to_detector_mm: float
    incident_flux: float
    electronic_noise: float
    detector_blur_fwhm: float

    def __post_init__(self) -> None:
        for key in ("incident_flux",):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) > 0):
                raise GeometryError(f"profile {self.name}: {key} must be > 0")
        for key in ("electronic_noise", "detector_blur_fwhm"):
            if not (math.isfinite(getattr(self, key)) and getattr(self, key) >= 0):
                raise GeometryError(f"profile {self.name}: {key} must be >= 0")

    def geometry(self, grid: ImageGrid) -> FanBeamGeometry:
        """Return this scanner's full-rotation fan-beam geometry for an image grid.

        Raises:
            GeometryError: the grid does not fit inside the source circle.
        """
        return fan_beam(
            self.n_views,
            self.n_detectors,
            self.detector_pitch_mm,
            self.source_to_isocenter_mm,
            self.source_to_detector_mm,
            grid.shape,
            grid.pixel_size_mm,
        )

    @property
    def field_of_view_mm(self) -> float:
        """Diameter of the scan field of view, mm."""
        fan = self.n_detectors * self.detector_pitch_mm / self.source_to_detector_mm
        return 2 * self.source_to_isocenter_mm * math.sin(fan / 2)

    def to_dict(self) -> dict[str, Any]:
        """Return the profile as a plain dictionary (for files and tables)."""
        return asdict(self)


PROFILES: dict[str, ScannerProfile] = {
    p.name: p
    for p in (
        ScannerProfile(
            name="lightspeed-like",
            description="third-generation 16-slice class (GE LightSpeed-like geometry)",
            n_detectors=888,
            detector_pitch_mm=1.0239,
            n_views=984,
            source_to_isocenter_mm=541.0,
            source_to_detector_mm=949.0,
            incident_flux=2.0e5,
            electronic_noise=8.0,
            detector_blur_fwhm=1.0,
        ),
        ScannerProfile(
            name="definition-like",
            description="third-generation 64-slice class (Siemens Definition-like geometry)",
            n_detectors=736,
            detector_pitch_mm=1.3387,
            n_views=1152,
            source_to_isocenter_mm=595.0,
            source_to_detector_mm=1085.6,
            incident_flux=1.5e5,
            electronic_noise=6.0,
            detector_blur_fwhm=0.8,
        ),
        ScannerProfile(
            name="brilliance-like",
            description="third-generation 64-slice class (Philips Brilliance-like geometry)",
            n_detectors=672,
            detector_pitch_mm=1.418,
            n_views=1200,
            source_to_isocenter_mm=570.0,
            source_to_detector_mm=1040.0,
            incident_flux=1.0e5,
            electronic_noise=10.0,
            detector_blur_fwhm=1.2,
        ),
        ScannerProfile(
            name="compact-head",
            description="portable head scanner class: short distances, coarse sampling, low dose",
            n_detectors=512,
            detector_pitch_mm=1.2,
            n_views=720,
            source_to_isocenter_mm=330.0,
            source_to_detector_mm=600.0,
            incident_flux=3.0e4,
            electronic_noise=12.0,
            detector_blur_fwhm=1.5,
        ),
    )
}


def profile_names() -> tuple[str, ...]:
    """Return the names of every scanner profile, in a stable order."""
    return tuple(PROFILES)


def get_profile(name: str) -> ScannerProfile:
    """Return the scanner profile called ``name``.

    Raises:
        ProfileNotFoundError: no profile has that name (the message lists the known ones).
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ProfileNotFoundError(f"no scanner profile {name!r}; choose one of {', '.join(PROFILES)}") from None
