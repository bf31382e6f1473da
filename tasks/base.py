"""What every training task provides: its spec, model, record loader and synthetic data.

A task is the unit a study names (by code, anchored on chain by hash): it fixes the model,
how one stored record becomes a model input, and how balanced synthetic examples are made
from the raw-data phantoms through that same input path.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from raw_data import DigitalPatient
from tasks.errors import TaskDataError
from tasks.synthetic import balanced_patients, check_patient_ids

__all__ = ["LoadResult", "Task", "TaskSpec"]


@dataclass(frozen=True)
class TaskSpec:
    """The public identity of a task.

    Attributes:
        code: versioned task code, e.g. ``"ct-sinogram-lesion-v1"``; the study names it.
        kind: the data-kind bit of the records the task consumes (``contracts.datause.Kind``
            values: 1 image, 2 CT sinogram, 4 MR k-space).
        description: one sentence for people choosing a task.
    """

    code: str
    kind: int
    description: str


@dataclass
class LoadResult:
    """Records loaded for training, and those refused with the reason.

    Attributes:
        inputs: float32 ``(n_loaded, *input_shape)``.
        loaded: index into the requested records of each row of ``inputs``.
        rejected: ``(path, reason)`` of every record that could not be used.
    """

    inputs: torch.Tensor
    loaded: list[int] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)


class Task(abc.ABC):
    """A binary lesion-detection task (label 1: at least one lesion, 0: none).

    Subclasses set the class attributes and implement :meth:`build_model`,
    :meth:`load_record`, and the two hooks that make synthetic records.

    Attributes:
        spec: code, data kind and description.
        formats: record formats :meth:`load_record` accepts (``"metai-ct-sinogram"``,
            ``"dicom"``, ``"ismrmrd"``), the node catalog's format names.
        input_shape: shape of one model input, channels first.
        lesion_radius_mm: range lesion radii of synthetic patients are drawn from, mm.
        lesion_contrast_hu: range of absolute lesion contrast of synthetic patients, HU.
    """

    spec: TaskSpec
    formats: tuple[str, ...]
    input_shape: tuple[int, ...]
    # Shared by every task: lesions of these sizes, always brighter than brain, are learnable
    # from ~160 examples without being trivial (see tests/tasks/test_learning.py).
    lesion_radius_mm: tuple[float, float] = (6.0, 12.0)
    lesion_contrast_hu: tuple[float, float] = (40.0, 100.0)

    @abc.abstractmethod
    def build_model(self) -> torch.nn.Module:
        """Return a freshly initialised model (the same weights on every call).

        The model maps a float32 batch ``(n, *input_shape)`` to ``n`` logits; a positive
        logit means "lesion present".
        """

    @abc.abstractmethod
    def load_record(self, path: Path, fmt: str) -> torch.Tensor:
        """Read one stored record and return the model input, float32 ``input_shape``.

        Parameters:
            path: the record file.
            fmt: its format as the node catalog names it: ``"metai-ct-sinogram"``,
                ``"dicom"`` or ``"ismrmrd"``.

        Raises:
            TaskDataError: a format this task does not read, a file that is not what
                ``fmt`` says, missing or corrupt, or data of an unusable shape or geometry.
        """

    @abc.abstractmethod
    def _synthetic_inputs(self, patients: Sequence[DigitalPatient], seeds: Sequence[int]) -> torch.Tensor:
        """Return the model inputs of synthetic records of ``patients`` (one noise seed each)."""

    @abc.abstractmethod
    def _write_records(
        self,
        folder: Path,
        patients: Sequence[DigitalPatient],
        seeds: Sequence[int],
        patient_ids: Sequence[str],
        stem: str,
    ) -> list[Path]:
        """Write one record per patient into ``folder``; return the paths in order."""

    def check_format(self, path: Path, fmt: str) -> None:
        """Raise :class:`TaskDataError` unless this task reads records of format ``fmt``."""
        if fmt not in self.formats:
            raise TaskDataError(
                f"{path}: task {self.spec.code} reads {' or '.join(repr(f) for f in self.formats)} "
                f"records, not {fmt!r}; select records of data kind {self.spec.kind} for this study"
            )

    def synthetic_examples(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Make ``n`` labelled examples from digital phantoms, through the record input path.

        Each example is the record :meth:`write_synthetic_records` would write for the same
        ``seed`` and position, turned into a model input by the code :meth:`load_record`
        uses. Labels alternate 0, 1, 0, ... (half with a lesion; one more 0 when ``n`` is odd).

        Parameters:
            n: number of examples, >= 1.
            seed: seed of patients and noise; another seed gives other patients.

        Returns:
            ``(inputs, labels)``: float32 ``(n, *input_shape)`` and int64 ``(n,)``.

        Raises:
            TaskDataError: ``n`` < 1.
        """
        patients, seeds = balanced_patients(n, seed, self.lesion_radius_mm, self.lesion_contrast_hu)
        labels = torch.tensor([p.label for p in patients], dtype=torch.int64)
        return self._synthetic_inputs(patients, seeds), labels

    def write_synthetic_records(
        self, folder: Path, n: int, seed: int, patient_ids: Sequence[str]
    ) -> list[tuple[Path, int]]:
        """Write ``n`` synthetic records in the format a node ingests, and return their labels.

        Record ``i`` belongs to ``patient_ids[i % len(patient_ids)]`` (the id is written where
        the node looks for it) and is the one :meth:`synthetic_examples` makes at position
        ``i`` for the same ``seed``. Files are named ``<task code>-s<seed>-<i>.<ext>``.

        Parameters:
            folder: destination, created if missing; existing files of the same name are
                replaced.
            n: number of records, >= 1.
            seed: seed of patients and noise.
            patient_ids: obviously fake local patient ids such as ``"TEST-P0001"``.

        Returns:
            ``(path, label)`` per record, in order; write them to a CSV sidecar with
            :func:`tasks.write_labels_csv` for ingest.

        Raises:
            TaskDataError: ``n`` < 1, no patient ids, or an id unfit for DICOM or ISMRMRD.
        """
        ids = check_patient_ids(patient_ids)
        patients, seeds = balanced_patients(n, seed, self.lesion_radius_mm, self.lesion_contrast_hu)
        folder.mkdir(parents=True, exist_ok=True)
        owners = [ids[i % len(ids)] for i in range(n)]
        paths = self._write_records(folder, patients, seeds, owners, f"{self.spec.code}-s{seed}")
        return [(path, patient.label) for path, patient in zip(paths, patients, strict=True)]

    def load_records(self, records: Sequence[tuple[Path, str]]) -> LoadResult:
        """Load many records; keep going past unusable ones and report each with its reason.

        Parameters:
            records: ``(path, fmt)`` pairs, as for :meth:`load_record`.

        Returns:
            The stacked inputs of the usable records, their indices, and the refusals.
        """
        result = LoadResult(inputs=torch.empty((0, *self.input_shape)))
        rows = []
        for i, (path, fmt) in enumerate(records):
            try:
                rows.append(self.load_record(path, fmt))
            except TaskDataError as exc:
                result.rejected.append((path, str(exc)))
                continue
            result.loaded.append(i)
        if rows:
            result.inputs = torch.stack(rows)
        return result
