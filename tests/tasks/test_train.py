"""Training helpers: weights in and out, their hash and files, local training, FedProx, evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tasks import (
    TaskDataError,
    TrainConfig,
    TrainingError,
    WeightsError,
    content_order,
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


@pytest.fixture(scope="module")
def examples() -> tuple[torch.Tensor, torch.Tensor]:
    """Sixteen MR examples (the cheapest task to simulate)."""
    return get_task(KSPACE).synthetic_examples(16, 3)


@pytest.fixture
def model() -> torch.nn.Module:
    return get_task(KSPACE).build_model()


def _distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.sqrt(sum(((x - y) ** 2).sum() for x, y in zip(a, b, strict=True))))


def test_weights_round_trip_through_a_model(model: torch.nn.Module) -> None:
    weights = [w + 0.5 for w in get_weights(model)]
    set_weights(model, weights)
    assert all(np.array_equal(a, b) for a, b in zip(get_weights(model), weights, strict=True))


def test_weights_of_another_model_are_refused_and_leave_the_model_unchanged(model: torch.nn.Module) -> None:
    before = get_weights(model)
    other = get_weights(get_task("ct-sinogram-lesion-v1").build_model())
    with pytest.raises(WeightsError, match="got 13 weight arrays, but the model has 10"):
        set_weights(model, other)
    assert _distance(get_weights(model), before) == 0


def test_weight_of_the_wrong_shape_is_refused(model: torch.nn.Module) -> None:
    weights = get_weights(model)
    weights[0] = weights[0][:1]
    with pytest.raises(WeightsError, match=r"weight 'features.0.0.weight' has shape \(1, 1, 3, 3\)"):
        set_weights(model, weights)


def test_weights_hash_is_32_bytes_and_changes_with_any_weight(model: torch.nn.Module) -> None:
    weights = get_weights(model)
    digest = weights_hash(weights)
    assert len(digest) == 32
    assert weights_hash([w.copy() for w in weights]) == digest
    weights[-1][0] += 1e-6
    assert weights_hash(weights) != digest


def test_weights_hash_follows_values_not_memory_layout() -> None:
    values = np.arange(6, dtype="<f4").reshape(2, 3)
    same = [np.asfortranarray(values.astype(">f4"))]
    assert weights_hash(same) == weights_hash([values])


def test_weights_hash_distinguishes_dtype_and_shape() -> None:
    values = np.arange(6, dtype=np.float32)
    digests = {
        weights_hash([values]),
        weights_hash([values.astype(np.float64)]),
        weights_hash([values.reshape(2, 3)]),
        weights_hash([values[:3], values[3:]]),
    }
    assert len(digests) == 4


def test_weights_hash_refuses_object_arrays() -> None:
    with pytest.raises(WeightsError, match="dtype object"):
        weights_hash([np.array([object()])])


def test_weights_file_round_trips(tmp_path: Path, model: torch.nn.Module) -> None:
    weights = get_weights(model)
    path = tmp_path / "global"  # no suffix: written exactly there, not to global.npz
    save_weights(path, weights)
    back = load_weights(path)
    assert weights_hash(back) == weights_hash(weights)
    assert [p.name for p in tmp_path.iterdir()] == ["global"]


def test_weights_file_that_is_not_npz_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(WeightsError, match=r"cannot be read as a weights \.npz"):
        load_weights(path)


def test_weights_file_with_other_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "weights.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(WeightsError, match="holds arrays \\['a'\\], expected w0000"):
        load_weights(path)


def test_training_lowers_the_loss_and_reports_its_metrics(
    model: torch.nn.Module, examples: tuple[torch.Tensor, torch.Tensor]
) -> None:
    inputs, labels = examples
    before = evaluate(model, inputs, labels)["loss"]
    metrics = train(model, inputs, labels, TrainConfig(epochs=3, lr=3e-3, batch_size=4))
    assert set(metrics) == {"train_loss", "train_accuracy", "examples"}
    assert metrics["examples"] == 16
    assert evaluate(model, inputs, labels)["loss"] < before


def test_training_is_deterministic(examples: tuple[torch.Tensor, torch.Tensor]) -> None:
    inputs, labels = examples
    runs = []
    for _ in range(2):
        model = get_task(KSPACE).build_model()
        train(model, inputs, labels, TrainConfig(epochs=1, batch_size=4, seed=5))
        runs.append(weights_hash(get_weights(model)))
    assert runs[0] == runs[1]


def test_the_update_does_not_depend_on_the_order_the_examples_are_listed_in(
        examples: tuple[torch.Tensor, torch.Tensor]) -> None:
    # A node lists its cohort by record id, a hash of files holding its own pseudonyms: another
    # node (or run) holding the same examples lists them in another order.
    inputs, labels = examples
    hashes = set()
    shuffled = torch.randperm(16, generator=torch.Generator().manual_seed(9))
    for order in (torch.arange(16), torch.arange(15, -1, -1), shuffled):
        model = get_task(KSPACE).build_model()
        train(model, inputs[order], labels[order], TrainConfig(epochs=2, batch_size=4, seed=5))
        hashes.add(weights_hash(get_weights(model)))
    assert len(hashes) == 1
    other_seed = get_task(KSPACE).build_model()  # the seed still draws the visiting order
    train(other_seed, inputs, labels, TrainConfig(epochs=2, batch_size=4, seed=6))
    assert weights_hash(get_weights(other_seed)) not in hashes


def test_content_order_sorts_by_the_examples_bytes_and_keeps_ties_in_place() -> None:
    inputs = torch.tensor([[3.0, 1.0], [1.0, 2.0], [3.0, 1.0], [0.5, 0.5]])
    labels = torch.tensor([1, 0, 1, 1])
    order = content_order(inputs, labels)
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    assert order.tolist().index(0) < order.tolist().index(2)  # the two equal examples keep their order
    shuffled = torch.tensor([2, 3, 0, 1])
    again = content_order(inputs[shuffled], labels[shuffled])
    assert torch.equal(inputs[shuffled][again], inputs[order])
    same = torch.ones(2, 2)  # equal inputs: the label decides, whichever way they are listed
    one, other = torch.tensor([0, 1]), torch.tensor([1, 0])
    assert torch.equal(one[content_order(same, one)], other[content_order(same, other)])


def test_fedprox_term_keeps_the_weights_near_the_global_model(examples: tuple[torch.Tensor, torch.Tensor]) -> None:
    inputs, labels = examples
    start = get_weights(get_task(KSPACE).build_model())
    moved = {}
    for mu in (0.0, 1000.0):
        model = get_task(KSPACE).build_model()
        train(model, inputs, labels, TrainConfig(epochs=2, lr=3e-3, batch_size=4, proximal_mu=mu), start)
        moved[mu] = _distance(get_weights(model), start)
    assert moved[1000.0] < 0.5 * moved[0.0]


def test_fedprox_needs_the_global_weights(model: torch.nn.Module, examples: tuple[torch.Tensor, torch.Tensor]) -> None:
    message = r"^proximal_mu > 0 needs global_weights, the model the round started from$"
    with pytest.raises(TrainingError, match=message):
        train(model, *examples, TrainConfig(proximal_mu=0.1))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("epochs", 0, "epochs 0"), ("lr", 0.0, "lr is 0.0"), ("proximal_mu", -1.0, "proximal_mu is -1.0")],
)
def test_invalid_training_configuration_is_refused(field: str, value: float, message: str) -> None:
    with pytest.raises(TrainingError, match=message):
        TrainConfig(**{field: value})  # type: ignore[arg-type]


def test_labels_other_than_zero_and_one_are_refused(
    model: torch.nn.Module, examples: tuple[torch.Tensor, torch.Tensor]
) -> None:
    inputs, labels = examples
    with pytest.raises(TaskDataError, match=r"^labels must be 0 \(no lesion\) or 1 \(lesion\)$"):
        evaluate(model, inputs, labels + 1)


def test_inputs_and_labels_of_different_lengths_are_refused(
    model: torch.nn.Module, examples: tuple[torch.Tensor, torch.Tensor]
) -> None:
    inputs, labels = examples
    with pytest.raises(TaskDataError, match=r"labels have shape \(15,\), expected \(16,\)"):
        train(model, inputs, labels[1:], TrainConfig())


def test_evaluation_of_a_constant_model_scores_chance_on_balanced_labels(
    examples: tuple[torch.Tensor, torch.Tensor],
) -> None:
    inputs, labels = examples
    model = get_task(KSPACE).build_model()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    result = evaluate(model, inputs, labels)
    assert result == {"loss": pytest.approx(np.log(2)), "accuracy": 0.5, "examples": 16}


class _Logistic(torch.nn.Module):
    """A logistic regression whose gradient the test can write down by hand."""

    def __init__(self, weight: np.ndarray, bias: float) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(weight.size, 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.from_numpy(weight.reshape(1, -1)))
            self.linear.bias.fill_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)


def _adam_by_hand(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, global_w: np.ndarray, steps: int, lr: float, mu: float
) -> tuple[np.ndarray, float]:
    """Full-batch Adam (PyTorch's defaults) on mean BCE + mu/2 ||w - global_w||^2, in float64.

    ``w`` and ``global_w`` hold the weights then the bias. Returns the final parameters and the
    cross-entropy (without the proximal term) at the start of the last step.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    design = np.hstack([x, np.ones((len(x), 1))])
    m, v = np.zeros_like(w), np.zeros_like(w)
    loss = float("nan")
    for t in range(1, steps + 1):
        p = 1 / (1 + np.exp(-(design @ w)))
        loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        grad = design.T @ (p - y) / len(y) + mu * (w - global_w)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        w = w - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    return w, loss


@pytest.mark.parametrize("mu", [0.0, 0.7])
def test_training_steps_equal_adam_worked_by_hand(mu: float) -> None:
    """Learning rate, loss and the FedProx coefficient, against an independent computation.

    One batch holds every example, so each epoch is one Adam step on the full gradient. The
    global weights sit far from the start, so the proximal pull is as large as the data's.
    """
    rng = np.random.default_rng(11)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = np.array([0, 1, 1, 0, 1, 0, 1, 1], dtype=np.float32)
    start = np.array([0.3, -0.2, 0.1, 0.05])
    global_w = np.array([-0.4, 0.6, -0.3, 0.2])
    model = _Logistic(start[:3].astype(np.float32), float(start[3]))
    global_weights = [global_w[:3].reshape(1, 3).astype(np.float32), global_w[3:].astype(np.float32)]
    config = TrainConfig(epochs=4, batch_size=8, lr=0.05, proximal_mu=mu, seed=3)
    metrics = train(model, torch.from_numpy(x), torch.from_numpy(y), config, global_weights if mu else None)
    expected, last_loss = _adam_by_hand(
        x.astype(np.float64), y.astype(np.float64), start, global_w, steps=4, lr=0.05, mu=mu
    )
    got = np.concatenate([p.detach().numpy().ravel() for p in (model.linear.weight, model.linear.bias)])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert metrics["train_loss"] == pytest.approx(last_loss, abs=1e-6)
    assert metrics["examples"] == 8
