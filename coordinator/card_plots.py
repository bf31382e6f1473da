"""The model card's training-curve picture: held-out loss and accuracy per round, as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from coordinator.errors import ModelCardError

__all__ = ["plot_training_curves"]


def plot_training_curves(path: Path, rounds: Sequence[int], loss: Sequence[float], accuracy: Sequence[float],
                         *, title: str, chance: float = 0.5) -> None:
    """Write a PNG of held-out loss (left) and accuracy (right) against the round number.

    Parameters:
        path: the PNG to write (replaced if present).
        rounds: round numbers, ascending.
        loss: held-out binary cross-entropy of each round's model.
        accuracy: held-out accuracy of each round's model, in [0, 1].
        title: the figure's title (the study and task).
        chance: the accuracy of guessing, drawn as a dashed line.

    Raises:
        ModelCardError: no rounds, or sequences of different lengths.
    """
    if not rounds or not len(rounds) == len(loss) == len(accuracy):
        raise ModelCardError(f"training curves need one loss and one accuracy per round; got {len(rounds)} rounds, "
                             f"{len(loss)} losses and {len(accuracy)} accuracies")
    import matplotlib

    matplotlib.use("Agg")  # no display on a coordinator host
    from matplotlib import pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.2), dpi=100)
    try:
        left.plot(rounds, loss, marker="o", color="tab:red")
        left.set_xlabel("round")
        left.set_ylabel("held-out loss (cross-entropy)")
        left.set_ylim(bottom=0.0)  # from zero, so a small change does not look like a collapse
        right.plot(rounds, accuracy, marker="o", color="tab:blue", label="model")
        right.axhline(chance, linestyle="--", color="grey", label=f"chance ({chance:g})")
        right.set_ylim(0.0, 1.0)
        right.set_xlabel("round")
        right.set_ylabel("held-out accuracy")
        right.legend(loc="lower right")
        for axis in (left, right):
            axis.set_xticks(list(rounds))
            axis.grid(alpha=0.3)
        figure.suptitle(title)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        # Fixed metadata: the same curves give the same bytes, so a re-run's picture can be compared.
        figure.savefig(path, format="png", metadata={"Software": None})
    finally:
        plt.close(figure)
