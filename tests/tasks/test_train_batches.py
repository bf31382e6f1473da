"""Local training visits every example once per epoch, the last partial batch included.

The expected batch sizes are written out per case (n examples, batch size b: ``n // b`` full
batches and one of ``n % b`` when it is not zero), the counts are taken by the test's own
model or a forward hook, and the metrics are recomputed here from the logits with plain math.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from tasks import TrainConfig, evaluate, get_task, train
from tests.tasks.conftest import KSPACE


class IndexRecorder(nn.Module):
    """A model whose inputs carry their example's index; it records the indices of each training call.

    Input ``(n, 2)``: column 0 the example's index, column 1 the logit it answers with. The one
    parameter enters the output multiplied by zero, so its gradient is zero and Adam leaves it
    (and the logits) unchanged: the logits while training are exactly column 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))
        self.calls: list[list[int]] = []
        self.eval_calls: list[list[int]] = []

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Record the batch's indices (training and evaluation apart) and return column 1 as the logits."""
        (self.calls if self.training else self.eval_calls).append([int(i) for i in inputs[:, 0].tolist()])
        return inputs[:, 1] + 0.0 * self.unused.sum()


@contextmanager
def counted_steps() -> Iterator[list[int]]:
    """Count every optimiser step taken inside the block (a global post-step hook)."""
    steps: list[int] = []

    def hook(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        steps.append(1)

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield steps
    finally:
        handle.remove()


def _examples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices 0..n-1 with logits spread over [-2, 2] (all losses distinct) and labels 0, 1, 0, ..."""
    logits = torch.linspace(-2.0, 2.0, n) if n > 1 else torch.tensor([0.7])
    inputs = torch.stack([torch.arange(n, dtype=torch.float32), logits], dim=1)
    labels = torch.arange(n) % 2
    return inputs, labels


# (examples, batch size, the batch sizes of one epoch in order)
CASES = [
    (10, 4, [4, 4, 2]),
    (9, 4, [4, 4, 1]),
    (7, 3, [3, 3, 1]),
    (12, 4, [4, 4, 4]),
    (3, 8, [3]),
    (1, 4, [1]),
]


@pytest.mark.parametrize(("n", "batch_size", "sizes"), CASES)
def test_every_example_is_seen_once_per_epoch_including_the_last_partial_batch(
    n: int, batch_size: int, sizes: list[int]
) -> None:
    epochs = 3
    model = IndexRecorder()
    inputs, labels = _examples(n)
    with counted_steps() as steps:
        metrics = train(model, inputs, labels, TrainConfig(epochs=epochs, batch_size=batch_size, seed=3))
    assert [len(call) for call in model.calls] == sizes * epochs
    per_epoch = len(sizes)
    for epoch in range(epochs):
        seen = [i for call in model.calls[epoch * per_epoch : (epoch + 1) * per_epoch] for i in call]
        assert sorted(seen) == list(range(n)), f"epoch {epoch} saw {sorted(seen)}"
    assert sum(len(call) for call in model.calls) == epochs * n
    assert len(steps) == len(sizes) * epochs  # one optimiser step per batch, the partial one too
    assert metrics["examples"] == n


def _by_hand(inputs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean binary cross-entropy and accuracy of logits column 1, written out: log(1 + e^-z) for label 1,
    log(1 + e^z) for label 0; a logit above 0 predicts 1."""
    pairs = list(zip(inputs[:, 1].tolist(), labels.tolist(), strict=True))
    losses = [math.log1p(math.exp(-z)) if y == 1 else math.log1p(math.exp(z)) for z, y in pairs]
    correct = sum((z > 0) == (y == 1) for z, y in pairs)
    return sum(losses) / len(pairs), correct / len(pairs)


@pytest.mark.parametrize(("n", "batch_size"), [(10, 4), (9, 4), (7, 3)])
def test_epoch_metrics_cover_every_example(n: int, batch_size: int) -> None:
    inputs, labels = _examples(n)
    model = IndexRecorder()
    metrics = train(model, inputs, labels, TrainConfig(epochs=2, batch_size=batch_size, seed=1))
    loss, accuracy = _by_hand(inputs, labels)
    assert metrics["train_loss"] == pytest.approx(loss, rel=1e-6)
    assert metrics["train_accuracy"] == pytest.approx(accuracy)
    assert float(model.unused.detach()) == 0.0  # zero gradient: the logits really stayed column 1


@pytest.mark.parametrize("n", [1, 63, 65, 130])
def test_evaluation_scores_every_example_once(n: int) -> None:
    inputs, labels = _examples(n)
    model = IndexRecorder()
    metrics = evaluate(model, inputs, labels)
    assert sorted(i for call in model.eval_calls for i in call) == list(range(n))
    loss, accuracy = _by_hand(inputs, labels)
    assert metrics == {"loss": pytest.approx(loss, rel=1e-6), "accuracy": pytest.approx(accuracy), "examples": n}


def test_real_task_model_sees_every_example_of_a_partial_last_batch() -> None:
    task = get_task(KSPACE)
    inputs, labels = task.synthetic_examples(10, 5)
    model = task.build_model()
    sizes: list[int] = []

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if module.training:
            sizes.append(args[0].shape[0])
            assert output.shape == (args[0].shape[0],)  # one logit per example, none dropped inside

    handle = model.register_forward_hook(hook)
    try:
        train(model, inputs, labels, TrainConfig(epochs=2, batch_size=4, lr=1e-3, seed=2))
    finally:
        handle.remove()
    assert sizes == [4, 4, 2, 4, 4, 2]


class DrawingRecorder(IndexRecorder):
    """An IndexRecorder that also draws from the global random generator, as dropout or augmentation do."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        torch.rand(3)
        return super().forward(inputs)


def test_the_order_of_examples_follows_the_seed_not_the_models_own_randomness() -> None:
    # Two models, one of which uses randomness while training: the same seed gives both the same
    # batches in the same order, epoch after epoch.
    inputs, labels = _examples(10)
    plain, drawing = IndexRecorder(), DrawingRecorder()
    for model in (plain, drawing):
        train(model, inputs, labels, TrainConfig(epochs=3, batch_size=4, seed=11))
    assert drawing.calls == plain.calls
    other = IndexRecorder()
    train(other, inputs, labels, TrainConfig(epochs=3, batch_size=4, seed=12))
    assert other.calls != plain.calls  # the seed does decide the order
