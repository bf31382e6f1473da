"""Federated training tasks of the MeTAI exchange: model, record loading, training, evaluation.

A study names a task by code; its hash (:func:`task_code_hash`) goes on chain. Hospital
nodes load their consented records with :meth:`Task.load_record`, train with :func:`train`
and send :func:`get_weights`; the coordinator aggregates, evaluates on
:meth:`Task.synthetic_examples`, and anchors :func:`weights_hash` of each model.

Tasks (binary: lesion present or absent):

- ``ct-sinogram-lesion-v1``: compact-head CT sinograms, learned in the raw-data domain.
- ``ct-image-lesion-v1``: CT images in HU (DICOM, or FBP of sinograms).
- ``mr-kspace-lesion-v1``: multi-coil MRI k-space (ISMRMRD).
"""

from tasks.base import LoadResult, Task, TaskSpec
from tasks.errors import TaskDataError, TaskError, TrainingError, UnknownTaskError, WeightsError
from tasks.models import count_parameters
from tasks.registry import TASKS, get_task, task_code_hash, task_modules
from tasks.synthetic import fake_patient_ids, write_labels_csv
from tasks.train import (
    TrainConfig,
    content_order,
    evaluate,
    get_weights,
    load_weights,
    save_weights,
    set_weights,
    train,
    weights_hash,
)

__all__ = [
    "TASKS",
    "LoadResult",
    "Task",
    "TaskDataError",
    "TaskError",
    "TaskSpec",
    "TrainConfig",
    "TrainingError",
    "UnknownTaskError",
    "WeightsError",
    "content_order",
    "count_parameters",
    "evaluate",
    "fake_patient_ids",
    "get_task",
    "get_weights",
    "load_weights",
    "save_weights",
    "set_weights",
    "task_code_hash",
    "task_modules",
    "train",
    "weights_hash",
    "write_labels_csv",
]
