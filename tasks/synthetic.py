"""Synthetic cohorts: balanced digital patients, fake patient ids and the labels sidecar."""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from raw_data import DigitalPatient, Lesion, make_patient
from raw_data._files import atomic_target as atomic_path
from tasks.errors import TaskDataError

__all__ = ["balanced_patients", "check_patient_ids", "fake_patient_ids", "write_labels_csv"]

_MAX_ID_LENGTH = 64  # DICOM LO, the shortest of the places a patient id goes


def _seed(seed: int, index: int, purpose: int) -> int:
    """Return an independent 32-bit seed for one record and one purpose (patient or noise)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, index, purpose]).generate_state(1)[0])


def balanced_patients(
    n: int, seed: int, radius_mm: tuple[float, float], contrast_hu: tuple[float, float]
) -> tuple[list[DigitalPatient], list[int]]:
    """Draw ``n`` digital patients, alternately without (label 0) and with one lesion (label 1).

    Lesions are hyperdense (positive contrast), like an acute haemorrhage on CT; the MR task
    shows them hyperintense. Anatomy varies in size and tilt from patient to patient.

    Parameters:
        n: number of patients, >= 1.
        seed: master seed; patient ``i`` depends only on ``(seed, i)``.
        radius_mm: range of lesion radii, mm.
        contrast_hu: range of lesion contrast above the surrounding brain, HU.

    Returns:
        The patients and, for each, a seed for its acquisition noise.

    Raises:
        TaskDataError: ``n`` < 1.
    """
    if n < 1:
        raise TaskDataError(f"n is {n}, expected at least 1 example")
    patients = []
    for i in range(n):
        patient = make_patient(_seed(seed, i, 0), lesions=i % 2, radius_mm=radius_mm, contrast_hu=contrast_hu)
        # make_patient draws the sign of the contrast; these tasks look for hyperdense lesions.
        lesions = tuple(Lesion(les.center_mm, les.radius_mm, abs(les.contrast_hu)) for les in patient.lesions)
        patients.append(dataclasses.replace(patient, lesions=lesions))
    return patients, [_seed(seed, i, 1) for i in range(n)]


def fake_patient_ids(n: int, prefix: str = "TEST-P") -> list[str]:
    """Return ``n`` obviously synthetic patient ids: ``TEST-P0001``, ``TEST-P0002``, ..."""
    return [f"{prefix}{i:04d}" for i in range(1, n + 1)]


def check_patient_ids(patient_ids: Sequence[str]) -> list[str]:
    """Return the ids as a list after checking they can be written to DICOM and ISMRMRD.

    Raises:
        TaskDataError: no ids, or an id that is empty, longer than 64 characters, or holds a
            backslash or control character.
    """
    if isinstance(patient_ids, str) or not patient_ids:
        raise TaskDataError("patient_ids must be a non-empty sequence of ids, e.g. fake_patient_ids(4)")
    for pid in patient_ids:
        if not pid or len(pid) > _MAX_ID_LENGTH or "\\" in pid or not pid.isprintable():
            raise TaskDataError(
                f"patient id {pid!r} is unusable: expected 1-{_MAX_ID_LENGTH} printable characters without '\\'"
            )
    return list(patient_ids)


def write_labels_csv(path: str | os.PathLike[str], records: Sequence[tuple[Path, int]]) -> None:
    """Write the CSV sidecar ``file,label`` that ``metai-node ingest --labels`` reads.

    Each ``file`` is written relative to the CSV's folder when the record lies inside it,
    else as the bare file name (the node matches either). The write is atomic.

    Parameters:
        path: the ``.csv`` to write.
        records: ``(path, label)`` pairs, as :meth:`tasks.Task.write_synthetic_records` returns.
    """
    target = Path(path)
    root = target.parent.resolve()
    with atomic_path(target) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "label"])
        for record, label in records:
            resolved = Path(record).resolve()
            name = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else resolved.name
            writer.writerow([name, int(label)])
