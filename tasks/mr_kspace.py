"""Task ``mr-kspace-lesion-v1``: lesion or not, learned from multi-coil MRI k-space.

Input: the root-sum-of-squares magnitude of the (zero-filled) k-space, on the 64 x 64, 4 mm
model grid, scaled to its typical tissue level (``(1, 64, 64)``). Records are 2D Cartesian
ISMRMRD files with any number of coils; coil maps and reference images they may carry are
not used.

Synthetic patients are the CT digital patients given T2-weighted-like intensities: CSF
bright, brain intermediate, skull dark, and lesions brighter than brain in proportion to
their CT contrast (T2-hyperintense, like oedema).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import ismrmrd
import ismrmrd.xsd
import numpy as np
import numpy.typing as npt
import torch

from raw_data import (
    DigitalPatient,
    Ellipse,
    KSpace,
    RawDataError,
    coil_sensitivities,
    rasterize_ellipses,
    read_ismrmrd,
    reconstruct_kspace,
    simulate_kspace,
    write_ismrmrd,
)
from raw_data._files import atomic_target as atomic_path
from raw_data.formats import ISMRMRD_FORMAT
from tasks.base import Task, TaskSpec
from tasks.errors import TaskDataError
from tasks.models import LesionCNN, seeded_init
from tasks.preprocess import MODEL_GRID, mr_normalise, resample_to_model_grid

__all__ = ["MrKspaceTask", "mr_image"]

# Absolute intensity of each anatomy ellipse, in the order of raw_data.ct_head: skull,
# brain, two ventricles (CSF), six grey-matter-like spots.
_TISSUE = (0.25, 0.6, 1.0, 1.0, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7)
_PARENT = (None, 0, 1, 1, 1, 1, 1, 1, 1, 1)
_LESION_PER_HU = 0.6 / 150.0  # a 75 HU CT lesion is 50 % brighter than brain
_COILS = 4
_NOISE_STD = 0.04  # per k-space sample, image units: brain SNR about 15 in one coil-combined pixel
_READOUT_OVERSAMPLING = 2


def mr_image(patient: DigitalPatient, size: int) -> npt.NDArray[np.float64]:
    """Return the patient's T2-weighted-like magnitude image, ``(size, size)`` on its grid.

    Raises:
        TaskDataError: the patient's anatomy is not the ten-ellipse ``raw_data.ct_head``.
    """
    if len(patient.anatomy) != len(_TISSUE):
        raise TaskDataError(
            f"patient anatomy has {len(patient.anatomy)} ellipses, expected the {len(_TISSUE)} of ct_head"
        )
    # Ellipses add up, so each one carries its tissue minus the tissue it sits in.
    ellipses = [
        dataclasses.replace(e, value=value - (0.0 if parent is None else _TISSUE[parent]))
        for e, value, parent in zip(patient.anatomy, _TISSUE, _PARENT, strict=True)
    ]
    ellipses += [
        Ellipse(lesion.contrast_hu * _LESION_PER_HU, lesion.center_mm, (lesion.radius_mm, lesion.radius_mm))
        for lesion in patient.lesions
    ]
    return rasterize_ellipses(tuple(ellipses), patient.grid(size))


@functools.lru_cache(maxsize=1)
def _coil_maps() -> npt.NDArray[np.complex64]:
    return coil_sensitivities(MODEL_GRID, _COILS)


def _simulate(patients: Sequence[DigitalPatient], seeds: Sequence[int]) -> list[KSpace]:
    out = []
    for patient, seed in zip(patients, seeds, strict=True):
        kspace = simulate_kspace(
            mr_image(patient, MODEL_GRID[0]),
            _coil_maps(),
            noise_std=_NOISE_STD,
            seed=seed,
            readout_oversampling=_READOUT_OVERSAMPLING,
            fov_mm=(patient.fov_mm, patient.fov_mm),
        )
        # A scanner exports neither the true image nor the coil maps: drop them.
        provenance = {**kspace.provenance, "synthetic": "true", "phantom": patient.description}
        out.append(dataclasses.replace(kspace, reference=None, coil_maps=None, provenance=provenance))
    return out


def _set_patient_id(path: Path, patient_id: str) -> None:
    """Write ``subjectInformation/patientID`` into the ISMRMRD header of ``path``."""
    dataset = ismrmrd.Dataset(str(path), "dataset", mode="r+")
    try:
        header = ismrmrd.xsd.CreateFromDocument(dataset.read_xml_header())
        header.subjectInformation = ismrmrd.xsd.subjectInformationType(patientID=patient_id)
        dataset.write_xml_header(ismrmrd.xsd.ToXML(header))
    finally:
        dataset.close()


class MrKspaceTask(Task):
    """Binary lesion detection on multi-coil MRI k-space."""

    spec = TaskSpec(
        code="mr-kspace-lesion-v1",
        kind=4,
        description="lesion present or absent, from 2D Cartesian multi-coil MR k-space (ISMRMRD), RSS on 64 x 64",
    )
    formats = (ISMRMRD_FORMAT,)
    input_shape = (1, *MODEL_GRID)

    def build_model(self) -> torch.nn.Module:
        """Return a fresh one-channel :class:`LesionCNN`."""
        return seeded_init(lambda: LesionCNN(1))

    def load_record(self, path: Path, fmt: str) -> torch.Tensor:
        """Read an ISMRMRD record and return ``(1, 64, 64)`` (see :class:`Task`)."""
        self.check_format(path, fmt)
        try:
            kspace = read_ismrmrd(path)
        except RawDataError as exc:
            raise TaskDataError(f"not a usable ISMRMRD k-space record: {exc}") from exc
        return self._prepare(kspace, str(path))

    def _prepare(self, kspace: KSpace, where: str) -> torch.Tensor:
        rows, cols = kspace.recon_shape
        fov_rows, fov_cols = kspace.fov_mm
        pixel_rows, pixel_cols = fov_rows / rows, fov_cols / cols
        if not (pixel_rows > 0 and abs(pixel_rows - pixel_cols) <= 1e-3 * pixel_cols):
            raise TaskDataError(
                f"{where}: reconstructed pixels are {pixel_rows:.3g} x {pixel_cols:.3g} mm; square pixels are required"
            )
        magnitude = reconstruct_kspace(kspace, method="rss")
        return mr_normalise(resample_to_model_grid(magnitude, pixel_cols, fill=0.0))[None]

    def _synthetic_inputs(self, patients: Sequence[DigitalPatient], seeds: Sequence[int]) -> torch.Tensor:
        return torch.stack([self._prepare(k, "synthetic k-space") for k in _simulate(patients, seeds)])

    def _write_records(
        self,
        folder: Path,
        patients: Sequence[DigitalPatient],
        seeds: Sequence[int],
        patient_ids: Sequence[str],
        stem: str,
    ) -> list[Path]:
        paths = []
        for i, (kspace, pid) in enumerate(zip(_simulate(patients, seeds), patient_ids, strict=True)):
            path = folder / f"{stem}-{i:04d}.h5"
            with atomic_path(path) as tmp:
                write_ismrmrd(tmp, kspace)
                _set_patient_id(tmp, pid)
            paths.append(path)
        return paths
