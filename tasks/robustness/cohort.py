"""The held-out virtual patients of a robustness evaluation.

Patients come from their own seed stream: :func:`patient_seed` mixes a fixed domain tag into
the seed, so no seed of :func:`tasks.synthetic.balanced_patients` (the hospitals' synthetic
records and the coordinator's held-out set) can give the same patient. Half the patients have
one hyperdense lesion; radii and contrasts cover ranges wider than the tasks train on (smaller
and fainter lesions included), the lesion patients cycling through every radius x contrast bin
so that each bin holds lesions, and every patient has demographics
(:func:`raw_data.phantoms.draw_demographics`; sexes alternate in pairs, ages and head sizes
are drawn) that shape the anatomy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from raw_data import DigitalPatient, Lesion, PhantomError, make_patient
from raw_data.phantoms import SEXES, draw_demographics
from tasks.errors import TaskDataError

__all__ = ["CONTRAST_BINS", "RADIUS_BINS", "HeldOutPatient", "held_out_patients", "patient_seed"]

RADIUS_BINS = ((3.0, 6.0), (6.0, 9.0), (9.0, 12.0))
"""Lesion radius bins, mm, lower bound included (the tasks train on 6-12 mm)."""
CONTRAST_BINS = ((20.0, 40.0), (40.0, 70.0), (70.0, 100.0))
"""Lesion contrast bins, HU above brain (the tasks train on 40-100 HU)."""
# "ROBU": a tag no other seed stream of the project starts with.
_DOMAIN = 0x524F4255
_PATIENT, _DEMOGRAPHICS, _NOISE = 0, 1, 2
_RETRIES = 20


def patient_seed(seed: int, index: int, purpose: int, attempt: int = 0) -> int:
    """Return the 32-bit seed of one held-out patient's anatomy, demographics or noise.

    Parameters:
        seed: the evaluation's seed.
        index: the patient's position in the cohort.
        purpose: 0 anatomy and lesion, 1 demographics, 2 noise (offset by the condition).
        attempt: redraw number, when a lesion found no room.
    """
    entropy = [_DOMAIN, seed & 0xFFFFFFFF, index, purpose, attempt]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


@dataclass(frozen=True)
class HeldOutPatient:
    """A held-out virtual patient.

    Attributes:
        index: position in the cohort; identifies the patient in the report.
        patient: the digital patient (label 1 with one lesion, 0 without).
    """

    index: int
    patient: DigitalPatient

    @property
    def label(self) -> int:
        """Return 1 when the patient has a lesion."""
        return self.patient.label


def held_out_patients(n: int, seed: int) -> list[HeldOutPatient]:
    """Draw ``n`` held-out patients, alternately without and with one hyperdense lesion.

    Parameters:
        n: number of patients, >= 2 (one of each label).
        seed: seed of the cohort; the same seed gives the same patients.

    Returns:
        The patients, index 0 to n - 1; odd indices have a lesion, whose radius and
        contrast bins cycle through :data:`RADIUS_BINS` x :data:`CONTRAST_BINS`.

    Raises:
        TaskDataError: ``n`` < 2.
    """
    if n < 2:
        raise TaskDataError(f"n is {n}, expected at least 2 patients (one with a lesion, one without)")
    out = []
    for i in range(n):
        # Sexes alternate in pairs, so each sex holds as many patients with a lesion as without.
        sex = SEXES[(i // 2) % len(SEXES)]
        demographics = draw_demographics(np.random.default_rng(patient_seed(seed, i, _DEMOGRAPHICS)), sex)
        # Lesion patient j (index 2j + 1) takes radius bin j mod 3 and contrast bin (j div 3) mod 3.
        j = i // 2
        radius = RADIUS_BINS[j % len(RADIUS_BINS)]
        contrast = CONTRAST_BINS[(j // len(RADIUS_BINS)) % len(CONTRAST_BINS)]
        for attempt in range(_RETRIES):
            try:
                patient = make_patient(
                    patient_seed(seed, i, _PATIENT, attempt),
                    lesions=i % 2,
                    radius_mm=radius,
                    contrast_hu=contrast,
                    demographics=demographics,
                )
                break
            except PhantomError:
                # A large lesion in a small, old head can find no room; redraw its place.
                continue
        else:
            raise TaskDataError(f"patient {i} of seed {seed}: no room for a lesion in {_RETRIES} draws")
        # make_patient draws the sign of the contrast; the tasks detect hyperdense lesions.
        lesions = tuple(Lesion(les.center_mm, les.radius_mm, abs(les.contrast_hu)) for les in patient.lesions)
        out.append(HeldOutPatient(i, dataclasses.replace(patient, lesions=lesions)))
    return out
