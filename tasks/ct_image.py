"""Task ``ct-image-lesion-v1``: lesion or not, learned from reconstructed CT images.

Input: one CT slice in Hounsfield units on the 64 x 64, 4 mm model grid, brain-windowed
(``(1, 64, 64)``). Records are DICOM CT images (HU from RescaleSlope and RescaleIntercept,
resampled by PixelSpacing) or MeTAI sinograms, which are reconstructed by FBP (Hann filter)
first. Synthetic records are FBP reconstructions of compact-head scans stored as DICOM.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from raw_data import DigitalPatient
from raw_data._files import atomic_target as atomic_path
from raw_data.formats import DICOM_FORMAT, SINOGRAM_FORMAT
from tasks.base import Task, TaskSpec
from tasks.ct import fbp_hu, read_task_sinogram, scan_patients
from tasks.dicom_ct import CtSlice, read_ct_image, write_ct_image
from tasks.models import LesionCNN, seeded_init
from tasks.preprocess import MODEL_GRID, ct_window, resample_to_model_grid

__all__ = ["CtImageTask"]

_AIR_HU = -1000.0


class CtImageTask(Task):
    """Binary lesion detection on CT images (image domain)."""

    spec = TaskSpec(
        code="ct-image-lesion-v1",
        kind=1,
        description="lesion present or absent, from CT images in HU (DICOM, or FBP of sinograms) on a 64 x 64 grid",
    )
    formats = (DICOM_FORMAT, SINOGRAM_FORMAT)
    input_shape = (1, *MODEL_GRID)

    def build_model(self) -> torch.nn.Module:
        """Return a fresh one-channel :class:`LesionCNN`."""
        return seeded_init(lambda: LesionCNN(1))

    def load_record(self, path: Path, fmt: str) -> torch.Tensor:
        """Read a DICOM CT slice or a sinogram (FBP) and return ``(1, 64, 64)`` (see :class:`Task`)."""
        self.check_format(path, fmt)
        if fmt == DICOM_FORMAT:
            return self._prepare(read_ct_image(path, str(path)))
        ((hu, pixel_mm),) = fbp_hu([read_task_sinogram(path)], str(path))
        return self._prepare(CtSlice(hu, pixel_mm))

    def _prepare(self, ct: CtSlice) -> torch.Tensor:
        return ct_window(resample_to_model_grid(ct.hu, ct.pixel_size_mm, fill=_AIR_HU))[None]

    def _images(
        self, patients: Sequence[DigitalPatient], seeds: Sequence[int]
    ) -> list[tuple[npt.NDArray[np.float64], float]]:
        return fbp_hu(scan_patients(patients, seeds), "synthetic scan")

    def _synthetic_inputs(self, patients: Sequence[DigitalPatient], seeds: Sequence[int]) -> torch.Tensor:
        rows = []
        for i, (hu, pixel_mm) in enumerate(self._images(patients, seeds)):
            # Through DICOM bytes, so the examples carry the stored HU quantisation exactly.
            buffer = io.BytesIO()
            write_ct_image(buffer, hu, pixel_mm, patient_id="TEST-SYNTHETIC", uid_source=f"example {i}")
            buffer.seek(0)
            rows.append(self._prepare(read_ct_image(buffer, f"synthetic example {i}")))
        return torch.stack(rows)

    def _write_records(
        self,
        folder: Path,
        patients: Sequence[DigitalPatient],
        seeds: Sequence[int],
        patient_ids: Sequence[str],
        stem: str,
    ) -> list[Path]:
        paths = []
        for i, ((hu, pixel_mm), pid) in enumerate(zip(self._images(patients, seeds), patient_ids, strict=True)):
            path = folder / f"{stem}-{i:04d}.dcm"
            with atomic_path(path) as tmp:
                write_ct_image(tmp, hu, pixel_mm, patient_id=pid, uid_source=f"{stem}-{i}")
            paths.append(path)
        return paths
