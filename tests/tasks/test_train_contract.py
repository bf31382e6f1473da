"""Training helpers against their documented contract: the weights digest rebuilt from its written-out
serialisation, the weights file layout, every refusal's message, and what training leaves behind
(the model in eval mode, the caller's random state untouched)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from eth_utils.crypto import keccak

from tasks import (
    TaskDataError,
    TrainConfig,
    TrainingError,
    WeightsError,
    evaluate,
    get_task,
    get_weights,
    load_weights,
    save_weights,
    set_weights,
    train,
    weights_hash,
)
from tests.tasks.conftest import KSPACE


def _documented_digest(arrays: list[np.ndarray]) -> bytes:
    """keccak256 of the serialisation written out in weights_hash's docstring."""
    out = b"metai-weights/1\n" + len(arrays).to_bytes(8, "little")
    for a in arrays:
        dtype = a.dtype.newbyteorder("<").str.encode("ascii")
        out += len(dtype).to_bytes(8, "little") + dtype + a.ndim.to_bytes(8, "little")
        out += b"".join(d.to_bytes(8, "little") for d in a.shape)
        out += np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
    return bytes(keccak(out))


def test_weights_hash_is_keccak_of_the_documented_serialisation() -> None:
    arrays = [np.arange(6, dtype="<f4").reshape(2, 3), np.array([1.5, -2.0], dtype=">f8"), np.zeros((), dtype="<i8")]
    expected = _documented_digest(arrays)
    assert weights_hash(arrays) == expected
    # The same bytes by hand for the first array, without numpy's dtype strings.
    by_hand = (b"metai-weights/1\n" + struct.pack("<Q", 1) + struct.pack("<Q", 3) + b"<f4"
               + struct.pack("<QQQ", 2, 2, 3) + struct.pack("<6f", 0, 1, 2, 3, 4, 5))
    assert weights_hash(arrays[:1]) == keccak(by_hand)


def test_weights_hash_of_no_arrays_is_the_digest_of_the_header() -> None:
    assert weights_hash([]) == keccak(b"metai-weights/1\n" + struct.pack("<Q", 0))


def test_weights_hash_refuses_structured_arrays_naming_the_index() -> None:
    structured = np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])
    with pytest.raises(WeightsError, match=r"^weight 1 has dtype .*; only plain numeric arrays can be hashed$"):
        weights_hash([np.zeros(2), structured])


def test_weights_file_holds_arrays_named_in_order(tmp_path: Path) -> None:
    arrays = [np.full((i % 3) + 1, float(i)) for i in range(12)]  # past w0009: names must sort as written
    path = tmp_path / "w.npz"
    save_weights(path, arrays)
    with np.load(path) as archive:
        assert sorted(archive.files) == [f"w{i:04d}" for i in range(12)]
    back = load_weights(path)
    assert len(back) == 12
    for a, b in zip(arrays, back, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_missing_weights_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "absent.npz"
    with pytest.raises(WeightsError, match=rf"^{path}: cannot be read as a weights \.npz \("):
        load_weights(path)


def test_a_weights_file_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, w0000=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match=r"cannot be read as a weights \.npz"):
        load_weights(path)


def test_a_weights_file_with_a_gap_in_its_names_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, w0000=np.zeros(1), w0002=np.zeros(1))
    message = r"holds arrays \['w0000', 'w0002'\], expected w0000, w0001, \.\.\. as save_weights writes$"
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_non_finite_weights_are_refused_and_leave_the_model_unchanged() -> None:
    model = get_task(KSPACE).build_model()
    before = get_weights(model)
    weights = [w.copy() for w in before]
    weights[1][...] = np.nan
    name = list(model.state_dict())[1]
    with pytest.raises(WeightsError, match=rf"^weight '{name}' holds NaN or infinite values$"):
        set_weights(model, weights)
    assert all(np.array_equal(a, b) for a, b in zip(get_weights(model), before, strict=True))


def test_weights_take_the_model_dtype() -> None:
    model = get_task(KSPACE).build_model()
    weights = [w.astype(np.float64) + 0.25 for w in get_weights(model)]
    set_weights(model, weights)
    for got, sent in zip(get_weights(model), weights, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, sent, rtol=1e-6)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"batch_size": 0}, r"^epochs 1 and batch_size 0 must be >= 1$"),
        ({"epochs": 0}, r"^epochs 0 and batch_size 16 must be >= 1$"),
        ({"lr": -0.1}, r"^lr is -0.1, expected a positive number$"),
        ({"lr": float("inf")}, r"^lr is inf, expected a positive number$"),
        ({"lr": float("nan")}, r"^lr is nan, expected a positive number$"),
        ({"proximal_mu": float("inf")}, r"^proximal_mu is inf, expected a number >= 0$"),
        ({"proximal_mu": -1e-9}, r"^proximal_mu is -1e-09, expected a number >= 0$"),
    ],
)
def test_training_configuration_refusals_name_the_value(config: dict[str, float], message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        TrainConfig(**config)  # type: ignore[arg-type]


def test_the_smallest_valid_configuration_is_accepted() -> None:
    config = TrainConfig(epochs=1, batch_size=1, lr=1e-12, proximal_mu=0.0)
    assert (config.epochs, config.batch_size, config.lr, config.proximal_mu) == (1, 1, 1e-12, 0.0)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (torch.zeros(4), r"^inputs have shape \(4,\), expected \(n >= 1, \.\.\.\)$"),
        (torch.zeros(0, 3), r"^inputs have shape \(0, 3\), expected \(n >= 1, \.\.\.\)$"),
    ],
)
def test_inputs_without_an_example_axis_or_examples_are_refused(inputs: torch.Tensor, message: str) -> None:
    model = get_task(KSPACE).build_model()
    with pytest.raises(TaskDataError, match=message):
        evaluate(model, inputs, torch.zeros(inputs.shape[0]))


def test_training_leaves_the_model_in_eval_mode_and_the_callers_random_state_alone() -> None:
    task = get_task(KSPACE)
    inputs, labels = task.synthetic_examples(6, 2)
    model = task.build_model()
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    train(model, inputs, labels, TrainConfig(epochs=1, batch_size=3, seed=9))
    assert not model.training
    assert torch.equal(torch.get_rng_state(), state)


def test_a_weights_file_with_other_names_is_refused_showing_four_of_them(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    np.savez(path, **{name: np.zeros(1) for name in ("a", "b", "c", "d", "e", "f")})
    with pytest.raises(WeightsError) as refused:
        load_weights(path)
    assert str(refused.value) == (f"{path}: holds arrays ['a', 'b', 'c', 'd'], expected w0000, w0001, ... as "
                                  "save_weights writes")
