"""The probe's "model" and "training": numpy only, so a round costs microseconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray


def initial_vector(dim: int) -> NDArray[np.float64]:
    """Return the global vector before round 1: zeros of length ``dim``."""
    return np.zeros(dim, dtype=np.float64)


def local_target(node_value: float, dim: int) -> NDArray[np.float64]:
    """Return the vector a node pulls toward: ``node_value`` in every component."""
    return np.full(dim, node_value, dtype=np.float64)


def train(vector: NDArray[np.float64], target: NDArray[np.float64], lr: float) -> NDArray[np.float64]:
    """Move ``vector`` a fraction ``lr`` of the way to ``target`` (one "epoch")."""
    return vector + lr * (target - vector)


def average(vectors: list[NDArray[np.float64]], weights: list[float]) -> NDArray[np.float64]:
    """Return the weighted average of ``vectors``."""
    return np.average(np.stack(vectors), axis=0, weights=np.asarray(weights, dtype=np.float64))


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def scalar(value: object) -> float:
    """Return a metric that must be one number (not a list) as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected one number, got {type(value).__name__} {value!r}")
    return float(value)
