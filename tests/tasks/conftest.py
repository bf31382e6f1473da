"""Fixtures for the task tests: the three tasks and a few synthetic records of each, written once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import Task, fake_patient_ids, get_task

SINOGRAM = "ct-sinogram-lesion-v1"
IMAGE = "ct-image-lesion-v1"
KSPACE = "mr-kspace-lesion-v1"
#: The node catalog's format of the records each task writes.
WRITTEN_FORMAT = {SINOGRAM: "metai-ct-sinogram", IMAGE: "dicom", KSPACE: "ismrmrd"}
RECORDS = 4
RECORD_SEED = 7


@pytest.fixture(scope="session")
def written_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Path, int]]]:
    """Four synthetic records per task (seed 7), owned by TEST-P0001 and TEST-P0002 in turn."""
    out = {}
    for code in (SINOGRAM, IMAGE, KSPACE):
        folder = tmp_path_factory.mktemp(code)
        out[code] = get_task(code).write_synthetic_records(folder, RECORDS, RECORD_SEED, fake_patient_ids(2))
    return out


@pytest.fixture(params=[SINOGRAM, IMAGE, KSPACE])
def task(request: pytest.FixtureRequest) -> Task:
    """Each task in turn."""
    return get_task(request.param)
