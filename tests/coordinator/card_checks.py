"""Recompute a model card's last-round figures from the saved model and the held-out data, with
the task registry's own loader and evaluation (shared by the card tests and the demo test)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coordinator.model_card import CARD_JSON, read_card
from coordinator.model_loader import load_model


@dataclass(frozen=True)
class Recomputed:
    weights_hash: str
    loss: float
    accuracy: float
    examples: int


def recompute_card(folder: Path) -> Recomputed:
    """Load ``folder/final.npz`` as the card says, rebuild the held-out set from its seed and evaluate."""
    from tasks import evaluate, get_task, load_weights, weights_hash

    card = read_card(folder / CARD_JSON)
    code = card["task"]["code"]
    model = load_model(folder / card["model"]["file"], code)
    held = card["held_out_set"]
    inputs, labels = get_task(code).synthetic_examples(int(held["examples"]), int(held["seed"]))
    metrics = evaluate(model, inputs, labels)
    digest = "0x" + weights_hash(load_weights(folder / card["model"]["file"])).hex()
    return Recomputed(digest, float(metrics["loss"]), float(metrics["accuracy"]), int(metrics["examples"]))
