"""The task registry: lookup, specs, models, and the task code hash."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from contracts.datause import Kind
from tasks import TASKS, Task, UnknownTaskError, get_task, task_code_hash, task_modules
from tests.tasks.conftest import IMAGE, KSPACE, SINOGRAM


def test_registry_holds_the_three_tasks_with_their_data_kinds() -> None:
    kinds = {code: task.spec.kind for code, task in TASKS.items()}
    assert kinds == {SINOGRAM: Kind.CT_SINOGRAM, IMAGE: Kind.IMAGE, KSPACE: Kind.MR_KSPACE}


def test_unknown_code_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(UnknownTaskError, match=r"no task 'ct-lesion-v9'; known tasks: ct-image-lesion-v1, ") as info:
        get_task("ct-lesion-v9")
    assert isinstance(info.value, KeyError)


def test_model_maps_a_batch_to_one_logit_each(task: Task) -> None:
    model = task.build_model()
    inputs, _ = task.synthetic_examples(3, 0)
    assert inputs.shape == (3, *task.input_shape)
    assert model(inputs).shape == (3,)


def test_build_model_gives_the_same_initial_weights_every_time(task: Task) -> None:
    first, second = task.build_model().state_dict(), task.build_model().state_dict()
    assert all(first[k].equal(second[k]) for k in first)


def test_model_state_is_its_parameters_only(task: Task) -> None:
    model = task.build_model()
    assert set(model.state_dict()) == {name for name, _ in model.named_parameters()}


def test_task_code_hash_is_32_bytes_and_stable() -> None:
    assert len(task_code_hash(SINOGRAM)) == 32
    assert task_code_hash(SINOGRAM) == task_code_hash(SINOGRAM)


def test_task_code_hash_differs_between_tasks() -> None:
    assert len({task_code_hash(code) for code in TASKS}) == len(TASKS)


def test_task_code_hash_covers_the_task_training_and_raw_data_readers() -> None:
    modules = task_modules(SINOGRAM)
    for name in ("tasks.ct_sinogram", "tasks.models", "tasks.train", "raw_data.sinogram_io", "raw_data.noise"):
        assert name in modules
    assert "tasks.mr_kspace" not in modules


def test_changed_task_source_changes_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = task_code_hash(SINOGRAM)
    module = sys.modules["tasks.train"]
    assert module.__file__ is not None
    edited = tmp_path / "train.py"
    edited.write_bytes(Path(module.__file__).read_bytes() + b"\nEPOCH_SCALE = 2  # other training code\n")
    monkeypatch.setattr(module, "__file__", str(edited))
    assert task_code_hash(SINOGRAM) != before


def test_hash_of_an_unknown_task_is_refused() -> None:
    with pytest.raises(UnknownTaskError, match="no task 'nope'"):
        task_code_hash("nope")
