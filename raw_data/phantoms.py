"""Digital patients: Shepp-Logan family phantoms with configurable lesions and a label.

Two families share the Shepp-Logan head outline:

- ``shepp_logan``: the classic relative intensities (Shepp and Logan 1974, or Toft's
  "modified" contrast), for MRI and generic tests.
- ``ct_head``: the same shapes with CT values (skull, brain, CSF, grey-matter-like
  features) given in Hounsfield units and stored as linear attenuation in 1/mm.

:func:`make_patient` draws a seeded variant of the CT head (size, tilt) with zero or more
round lesions of chosen size, contrast and position; the patient's ``label`` is 1 when it
has a lesion, the target of the detection training tasks. Given :class:`Demographics`
(sex, age, head size; see :func:`draw_demographics`), the anatomy follows them: the head's
size, the skull's density and the ventricles' size change, so that a model's performance
can be compared between groups of patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from raw_data.ellipses import Ellipse, ellipse_line_integrals, rasterize_ellipses
from raw_data.errors import PhantomError
from raw_data.geometry import Geometry, ImageGrid

__all__ = [
    "MU_WATER_PER_MM",
    "SEXES",
    "Demographics",
    "DigitalPatient",
    "Lesion",
    "ct_head",
    "draw_demographics",
    "hu_to_attenuation",
    "make_patient",
    "shepp_logan",
]

MU_WATER_PER_MM = 0.0194
"""Linear attenuation of water at an effective energy of about 70 keV, 1/mm (NIST XCOM,
log-log interpolation between 60 and 80 keV). Used for every HU <-> attenuation conversion."""

# (semi-axis a, semi-axis b, centre x, centre y, angle in degrees), as fractions of the
# half field of view: the ten ellipses of Shepp and Logan (1974).
_SHAPES = (
    (0.69, 0.92, 0.0, 0.0, 0.0),
    (0.6624, 0.874, 0.0, -0.0184, 0.0),
    (0.11, 0.31, 0.22, 0.0, -18.0),
    (0.16, 0.41, -0.22, 0.0, 18.0),
    (0.21, 0.25, 0.0, 0.35, 0.0),
    (0.046, 0.046, 0.0, 0.1, 0.0),
    (0.046, 0.046, 0.0, -0.1, 0.0),
    (0.046, 0.023, -0.08, -0.605, 0.0),
    (0.023, 0.023, 0.0, -0.606, 0.0),
    (0.023, 0.046, 0.06, -0.605, 0.0),
)
_ORIGINAL = (2.0, -0.98, -0.02, -0.02, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01)
_MODIFIED = (1.0, -0.8, -0.2, -0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1)
# Tissue of each region, HU: skull, brain, two ventricles (CSF), then grey-matter-like spots.
_REGION_HU = (1000.0, 40.0, 8.0, 8.0, 52.0, 60.0, 60.0, 65.0, 65.0, 65.0)
_PARENT = (None, 0, 1, 1, 1, 1, 1, 1, 1, 1)  # which region each ellipse sits in
_VENTRICLES = (2, 3)  # the two CSF-filled ellipses, which widen with age


def hu_to_attenuation(hu: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Convert Hounsfield units to linear attenuation, 1/mm, clipped at zero.

    ``mu = MU_WATER_PER_MM * (1 + HU / 1000)``: -1000 HU (air) maps to 0.
    """
    return np.clip(MU_WATER_PER_MM * (1.0 + np.asarray(hu, dtype=np.float64) / 1000.0), 0, None)


def _ellipses(
    values: tuple[float, ...],
    fov_mm: float,
    scale: float = 1.0,
    tilt_rad: float = 0.0,
    growth: tuple[float, ...] = (1.0,) * len(_SHAPES),
) -> tuple[Ellipse, ...]:
    half = fov_mm / 2 * scale
    c, s = math.cos(tilt_rad), math.sin(tilt_rad)
    out = []
    for value, (a, b, x, y, deg), g in zip(values, _SHAPES, growth, strict=True):
        cx, cy = x * half, y * half
        out.append(
            Ellipse(
                value=value,
                center_mm=(cx * c - cy * s, cx * s + cy * c),
                axes_mm=(a * half * g, b * half * g),
                angle_rad=math.radians(deg) + tilt_rad,
            )
        )
    return tuple(out)


def shepp_logan(fov_mm: float = 256.0, *, modified: bool = True) -> tuple[Ellipse, ...]:
    """Return the Shepp-Logan head phantom in relative intensity units.

    Parameters:
        fov_mm: field of view the head is drawn in (the skull spans 92% of it vertically), mm.
        modified: Toft's higher-contrast values (True) or the original 1974 values.

    Returns:
        Ten ellipses, values dimensionless (the brain is 0.2 modified, 1.02 original).
    """
    return _ellipses(_MODIFIED if modified else _ORIGINAL, fov_mm)


def _ct_values(skull_hu: float) -> tuple[float, ...]:
    mu = [float(hu_to_attenuation(hu)) for hu in (skull_hu, *_REGION_HU[1:])]
    return tuple(m - (0.0 if p is None else mu[p]) for m, p in zip(mu, _PARENT, strict=True))


def ct_head(
    fov_mm: float = 256.0,
    *,
    scale: float = 1.0,
    tilt_rad: float = 0.0,
    skull_hu: float = _REGION_HU[0],
    ventricle_scale: float = 1.0,
) -> tuple[Ellipse, ...]:
    """Return the Shepp-Logan-shaped CT head: skull 1000 HU, brain 40 HU, CSF 8 HU.

    Parameters:
        fov_mm: field of view, mm.
        scale: size factor applied to every ellipse (1 fills 92% of the field vertically).
        tilt_rad: rotation of the whole head, radians, counter-clockwise.
        skull_hu: skull density, HU (lower for thinner, less mineralised bone).
        ventricle_scale: factor on both semi-axes of the two ventricles (above 1: the
            enlarged ventricles of an atrophic, older brain).

    Returns:
        Ten ellipses with additive linear attenuation values, 1/mm.

    Raises:
        PhantomError: ``skull_hu`` not above the brain's 40 HU, or ``ventricle_scale``
            outside 0.5-2 (larger ventricles would cross the skull).
    """
    if not (math.isfinite(skull_hu) and skull_hu > _REGION_HU[1]):
        raise PhantomError(f"skull_hu is {skull_hu}, expected a number above the brain's {_REGION_HU[1]:.0f} HU")
    if not (0.5 <= ventricle_scale <= 2.0):
        raise PhantomError(f"ventricle_scale is {ventricle_scale}, expected 0.5 to 2")
    growth = tuple(ventricle_scale if i in _VENTRICLES else 1.0 for i in range(len(_SHAPES)))
    return _ellipses(_ct_values(skull_hu), fov_mm, scale, tilt_rad, growth)


SEXES = ("female", "male")
"""The sexes :class:`Demographics` can carry."""
# Stand-in anatomy, not clinical norms: heads of the male phantoms are drawn about 6 %
# larger; from 30 years on the skull loses density and the ventricles widen steadily.
_HEAD_SCALE = {"female": (0.88, 0.98), "male": (0.94, 1.04)}
_AGE_YEARS = (20.0, 90.0)
_SKULL_LOSS_HU_PER_YEAR = 5.0
_VENTRICLE_GROWTH_PER_YEAR = 0.005
_AGING_FROM_YEARS = 30.0


@dataclass(frozen=True)
class Demographics:
    """Demographic-like attributes of a digital patient, and the anatomy they imply.

    Attributes:
        sex: ``"female"`` or ``"male"``.
        age_years: age, years, 20 to 90.
        head_scale: size factor of the whole head (1 fills 92 % of the field vertically),
            0.8 to 1.05.
    """

    sex: str
    age_years: float
    head_scale: float

    def __post_init__(self) -> None:
        if self.sex not in SEXES:
            raise PhantomError(f"sex is {self.sex!r}, expected one of {', '.join(SEXES)}")
        if not (_AGE_YEARS[0] <= self.age_years <= _AGE_YEARS[1]):
            raise PhantomError(f"age_years is {self.age_years}, expected {_AGE_YEARS[0]:.0f} to {_AGE_YEARS[1]:.0f}")
        if not (0.8 <= self.head_scale <= 1.05):
            raise PhantomError(f"head_scale is {self.head_scale}, expected 0.8 to 1.05 (the head must fit the field)")

    @property
    def skull_hu(self) -> float:
        """Skull density for this age, HU (1000 up to 30 years, 5 HU less each year after)."""
        return _REGION_HU[0] - _SKULL_LOSS_HU_PER_YEAR * max(0.0, self.age_years - _AGING_FROM_YEARS)

    @property
    def ventricle_scale(self) -> float:
        """Ventricle size factor for this age (1 up to 30 years, +0.5 % each year after)."""
        return 1.0 + _VENTRICLE_GROWTH_PER_YEAR * max(0.0, self.age_years - _AGING_FROM_YEARS)


def draw_demographics(rng: np.random.Generator, sex: str | None = None) -> Demographics:
    """Draw a sex (even odds), an age (uniform, 20-90 years) and a sex-dependent head size.

    Parameters:
        rng: the generator to draw from (three draws, whether or not ``sex`` is given).
        sex: ``"female"`` or ``"male"`` to fix the sex instead of drawing it.

    Raises:
        PhantomError: an unknown ``sex``.
    """
    drawn = SEXES[int(rng.integers(0, len(SEXES)))]
    if sex is not None and sex not in SEXES:
        raise PhantomError(f"sex is {sex!r}, expected one of {', '.join(SEXES)}")
    sex = drawn if sex is None else sex
    age = float(rng.uniform(*_AGE_YEARS))
    return Demographics(sex, age, float(rng.uniform(*_HEAD_SCALE[sex])))


@dataclass(frozen=True)
class Lesion:
    """A round lesion.

    Attributes:
        center_mm: centre ``(x, y)``, mm.
        radius_mm: radius, mm.
        contrast_hu: difference to the surrounding tissue, HU (negative: hypodense).
    """

    center_mm: tuple[float, float]
    radius_mm: float
    contrast_hu: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.radius_mm) and self.radius_mm > 0):
            raise PhantomError(f"lesion radius is {self.radius_mm} mm, expected > 0")
        if not all(math.isfinite(v) for v in (*self.center_mm, self.contrast_hu)):
            raise PhantomError(f"lesion {self} holds a NaN or infinite number")

    def ellipse(self) -> Ellipse:
        """Return the lesion as an additive attenuation ellipse (1/mm)."""
        r = self.radius_mm
        return Ellipse(self.contrast_hu * MU_WATER_PER_MM / 1000.0, self.center_mm, (r, r))


@dataclass(frozen=True)
class DigitalPatient:
    """A parametric CT patient: anatomy ellipses, lesions and the resulting label.

    Attributes:
        anatomy: ellipses with attenuation values, 1/mm.
        lesions: the lesions added on top of the anatomy.
        fov_mm: field of view the patient is meant to be imaged in, mm.
        description: how the patient was made (family, seed), for provenance.
        demographics: the attributes the anatomy was made from, if any.
    """

    anatomy: tuple[Ellipse, ...]
    lesions: tuple[Lesion, ...]
    fov_mm: float
    description: str
    demographics: Demographics | None = None

    @property
    def label(self) -> int:
        """Return 1 if the patient has at least one lesion, else 0."""
        return int(bool(self.lesions))

    @property
    def ellipses(self) -> tuple[Ellipse, ...]:
        """Return anatomy and lesions as one ellipse set (1/mm)."""
        return self.anatomy + tuple(lesion.ellipse() for lesion in self.lesions)

    def grid(self, size: int) -> ImageGrid:
        """Return the ``size`` x ``size`` grid spanning the field of view."""
        return ImageGrid((size, size), self.fov_mm / size)

    def image(self, size: int, *, supersample: int = 4) -> npt.NDArray[np.float64]:
        """Return the attenuation image, 1/mm, shape ``(size, size)``, on :meth:`grid`."""
        return rasterize_ellipses(self.ellipses, self.grid(size), supersample=supersample)

    def lesion_mask(self, size: int) -> npt.NDArray[np.bool_]:
        """Return pixels whose centre lies inside any lesion, shape ``(size, size)``."""
        grid = self.grid(size)
        x, y = grid.x_mm()[None, :], grid.y_mm()[:, None]
        mask = np.zeros(grid.shape, dtype=bool)
        for lesion in self.lesions:
            mask |= lesion.ellipse().contains(x, y)
        return mask

    def line_integrals(self, geometry: Geometry) -> npt.NDArray[np.float64]:
        """Return the exact, noiseless sinogram for ``geometry``, ``(views, detectors)``."""
        return ellipse_line_integrals(self.ellipses, geometry)


_CLEARANCE_MM = 8.0  # homogeneous brain kept around a lesion, for its CNR background ring
_ATTEMPTS = 500


def _place(rng: np.random.Generator, radius: float, brain: Ellipse, avoid: tuple[Ellipse, ...]) -> tuple[float, float]:
    """Draw a lesion centre inside the brain, clear of the other structures by the clearance."""
    a, b = (ax - radius - _CLEARANCE_MM for ax in brain.axes_mm)
    if min(a, b) <= 0:
        raise PhantomError(f"lesion radius {radius:.1f} mm does not fit in the brain; lower it")
    c, s = math.cos(brain.angle_rad), math.sin(brain.angle_rad)
    ring = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    for _ in range(_ATTEMPTS):
        rho, phi = math.sqrt(rng.uniform(0, 1)), rng.uniform(0, 2 * math.pi)
        u, v = rho * a * math.cos(phi), rho * b * math.sin(phi)
        x, y = brain.center_mm[0] + u * c - v * s, brain.center_mm[1] + u * s + v * c
        # Sample the disc out to the clearance on rings at most ~2.6 mm apart.
        radii = np.linspace(0.0, radius + _CLEARANCE_MM, 8)[:, None]
        px, py = x + radii * np.cos(ring), y + radii * np.sin(ring)
        if not any(e.contains(px, py).any() for e in avoid):
            return (x, y)
    raise PhantomError(
        f"no room for a {radius:.1f} mm lesion clear of the other structures; use fewer or smaller lesions"
    )


def make_patient(
    seed: int,
    *,
    fov_mm: float = 256.0,
    lesions: int = 1,
    radius_mm: tuple[float, float] = (4.0, 10.0),
    contrast_hu: tuple[float, float] = (20.0, 60.0),
    vary_anatomy: bool = True,
    demographics: Demographics | None = None,
) -> DigitalPatient:
    """Draw a seeded digital CT patient with ``lesions`` round lesions inside the brain.

    Parameters:
        seed: seed of the generator; the same seed gives the same patient.
        fov_mm: field of view, mm.
        lesions: number of lesions (0 for a healthy patient, label 0).
        radius_mm: range the lesion radii are drawn from, mm.
        contrast_hu: range of absolute lesion contrast, HU; the sign is drawn at random.
        vary_anatomy: scale the head by 0.9-1.0 and tilt it by up to 5 degrees.
        demographics: sex, age and head size to build the anatomy from: the head is
            scaled by ``head_scale`` (instead of the drawn 0.9-1.0), the skull and
            ventricles follow the age. None (the default) gives the same patients as
            before demographics existed.

    Returns:
        The patient; ``label`` is 1 if ``lesions > 0``.

    Raises:
        PhantomError: negative lesion count, an empty or negative range, or no room left for
            a lesion clear of the other structures.
    """
    if lesions < 0:
        raise PhantomError(f"lesions is {lesions}, expected >= 0")
    for name, (lo, hi) in (("radius_mm", radius_mm), ("contrast_hu", contrast_hu)):
        if not (0 <= lo <= hi):
            raise PhantomError(f"{name} range is ({lo}, {hi}), expected 0 <= low <= high")
    if radius_mm[0] <= 0 and lesions:
        raise PhantomError(f"radius_mm range starts at {radius_mm[0]}, expected > 0")
    rng = np.random.default_rng(seed)
    scale = float(rng.uniform(0.9, 1.0)) if vary_anatomy else 1.0
    tilt = float(rng.uniform(-1, 1) * math.radians(5)) if vary_anatomy else 0.0
    if demographics is not None:
        # The draws above still happen, so a seed's tilt is the same with or without demographics.
        scale = demographics.head_scale
        anatomy = ct_head(
            fov_mm,
            scale=scale,
            tilt_rad=tilt,
            skull_hu=demographics.skull_hu,
            ventricle_scale=demographics.ventricle_scale,
        )
    else:
        anatomy = ct_head(fov_mm, scale=scale, tilt_rad=tilt)
    brain = anatomy[1]
    placed: list[Lesion] = []
    for _ in range(lesions):
        r = float(rng.uniform(*radius_mm))
        centre = _place(rng, r, brain, anatomy[2:] + tuple(p.ellipse() for p in placed))
        sign = 1.0 if rng.uniform() < 0.5 else -1.0
        placed.append(Lesion(centre, r, sign * float(rng.uniform(*contrast_hu))))
    description = f"ct_head seed={seed} lesions={lesions} scale={scale:.3f} tilt_rad={tilt:.4f}"
    if demographics is not None:
        description += f" sex={demographics.sex} age_years={demographics.age_years:.1f}"
    return DigitalPatient(anatomy, tuple(placed), fov_mm, description, demographics)
