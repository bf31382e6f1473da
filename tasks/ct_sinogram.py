"""Task ``ct-sinogram-lesion-v1``: lesion or not, learned from the CT sinogram itself.

Input: the compact-head sinogram brought to 90 views x 128 detectors (line integrals,
``(1, 90, 128)``). Model: :class:`tasks.models.SinogramLesionNet`, which filters and
back-projects inside the network with learned filters, so the whole model trains on raw data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from raw_data import DigitalPatient, Sinogram, write_sinogram
from raw_data.formats import SINOGRAM_FORMAT
from tasks.base import Task, TaskSpec
from tasks.ct import (
    MODEL_SINOGRAM_SHAPE,
    model_geometry,
    read_task_sinogram,
    scan_patients,
    to_model_sinogram,
)
from tasks.models import SinogramLesionNet, seeded_init

__all__ = ["CtSinogramTask"]

# Where a MeTAI sinogram names its patient; the node reads it there and removes it on ingest.
_PATIENT_KEY = "patient_id"


class CtSinogramTask(Task):
    """Binary lesion detection on CT sinograms (raw-data domain)."""

    spec = TaskSpec(
        code="ct-sinogram-lesion-v1",
        kind=2,
        description="lesion present or absent, from compact-head CT sinograms (90 x 128), learned on raw data",
    )
    formats = (SINOGRAM_FORMAT,)
    input_shape = (1, *MODEL_SINOGRAM_SHAPE)

    def build_model(self) -> torch.nn.Module:
        """Return a fresh :class:`SinogramLesionNet` for the compact-head model geometry."""
        geometry = model_geometry()
        return seeded_init(lambda: SinogramLesionNet(geometry))

    def load_record(self, path: Path, fmt: str) -> torch.Tensor:
        """Read a sinogram record and return ``(1, 90, 128)`` line integrals (see :class:`Task`)."""
        self.check_format(path, fmt)
        return self._prepare(read_task_sinogram(path), str(path))

    def _prepare(self, sinogram: Sinogram, where: str) -> torch.Tensor:
        return to_model_sinogram(sinogram, where)[None]

    def _synthetic_inputs(self, patients: Sequence[DigitalPatient], seeds: Sequence[int]) -> torch.Tensor:
        sinograms = scan_patients(patients, seeds)
        return torch.stack([self._prepare(s, f"synthetic {s.provenance['phantom']}") for s in sinograms])

    def _write_records(
        self,
        folder: Path,
        patients: Sequence[DigitalPatient],
        seeds: Sequence[int],
        patient_ids: Sequence[str],
        stem: str,
    ) -> list[Path]:
        paths = []
        for i, (sino, pid) in enumerate(zip(scan_patients(patients, seeds), patient_ids, strict=True)):
            path = folder / f"{stem}-{i:04d}.h5"
            provenance = {**sino.provenance, _PATIENT_KEY: pid}
            write_sinogram(path, Sinogram(sino.data, sino.geometry, sino.profile, provenance))
            paths.append(path)
        return paths
