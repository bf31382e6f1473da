"""Fixtures for the task tests: the three tasks and a few synthetic records of each, written once."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks import Task, TrainConfig, fake_patient_ids, get_task, get_weights, load_weights, save_weights, train

SINOGRAM = "ct-sinogram-lesion-v1"
IMAGE = "ct-image-lesion-v1"
KSPACE = "mr-kspace-lesion-v1"
#: The node catalog's format of the records each task writes.
WRITTEN_FORMAT = {SINOGRAM: "metai-ct-sinogram", IMAGE: "dicom", KSPACE: "ismrmrd"}
RECORDS = 4
RECORD_SEED = 7
#: How tests train a task's model to see it learn: 160 synthetic examples (seed 1), a seeded
#: initialisation, 36 epochs on one thread (see test_learning.py for why 36), at the learning
#: rate studies use by default (the app's ``lr``, 1e-3; see test_learning.py for why not more).
LEARNING_EXAMPLES = 160
LEARNING_SEED = 1
LEARNING_CONFIG = TrainConfig(epochs=36, batch_size=8, lr=1e-3, seed=0)
Weights = list[np.ndarray]


@pytest.fixture(scope="session")
def written_records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Path, int]]]:
    """Four synthetic records per task (seed 7), owned by TEST-P0001 and TEST-P0002 in turn."""
    out = {}
    for code in (SINOGRAM, IMAGE, KSPACE):
        folder = tmp_path_factory.mktemp(code)
        out[code] = get_task(code).write_synthetic_records(folder, RECORDS, RECORD_SEED, fake_patient_ids(2))
    return out


def train_as_the_learning_tests_do(code: str) -> Weights:
    """Train ``code``'s model by the recipe of :data:`LEARNING_CONFIG` and return its weights."""
    task = get_task(code)
    inputs, labels = task.synthetic_examples(LEARNING_EXAMPLES, LEARNING_SEED)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)  # the initialisation does not depend on which tests ran before
        model = task.build_model()
        train(model, inputs, labels, LEARNING_CONFIG)
    finally:
        torch.set_num_threads(before)
    return get_weights(model)


@pytest.fixture(scope="session")
def trained_weights(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Weights]:
    """Weights of each task's model trained by :func:`train_as_the_learning_tests_do`, once per run.

    test_learning checks that they detect lesions and test_robustness_report evaluates them; the
    training (deterministic: seeded, one thread) is done by whichever test process asks first and
    read from a file by the others, under a lock in the run's shared temporary directory.
    """
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # the workers' common folder

    def weights(code: str) -> Weights:
        path = shared / f"trained-{code}.npz"
        with open(shared / f"trained-{code}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                save_weights(path, train_as_the_learning_tests_do(code))
            return load_weights(path)

    return weights


@pytest.fixture(params=[SINOGRAM, IMAGE, KSPACE])
def task(request: pytest.FixtureRequest) -> Task:
    """Each task in turn."""
    return get_task(request.param)
