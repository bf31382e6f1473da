"""The arithmetic of a round's aggregate, fixed to the operation so that a second implementation
reproduces it bit for bit from a study's lineage bundle (docs/formats/lineage-bundle.md).

Each layer is computed in IEEE 754 binary64 (float64), one rounded operation at a time, with
no fused multiply-add, and cast to the layer's dtype at the end:

- :func:`weighted_sum`: ``acc = w1·x1``, then ``acc = acc + wj·xj`` for j = 2..m, in the
  order the contributors are listed, each ``xj`` widened to float64 first;
- FedAvg (:func:`fedavg`): ``wj = countj / Σ count`` and the model is ``weighted_sum`` of the
  updates, cast to the layer's dtype;
- under differential privacy (``coordinator.privacy.private_mean``): ``wj = 1 / m``, each
  difference ``updatej - sent`` scaled by its clip factor ``fj`` (:func:`clip_factor`), and the
  model is ``((sent + weighted_sum(fj·(updatej - sent))) + noise)``, cast to the layer's dtype.

NumPy's ``np.sum`` / ``np.mean`` are not used: they switch to pairwise summation along a
contiguous axis, whose order a reader cannot infer from the result. The one sum over a whole
update, the squared L2 norm of its difference from the model sent (:func:`delta_norm`), is
``math.fsum``: correctly rounded, so it does not depend on any order at all.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["clip_factor", "delta_norm", "equal_weights", "fedavg", "fedavg_weights", "weighted_sum"]


def fedavg_weights(counts: Sequence[int]) -> list[float]:
    """Each contributor's weight, ``count / Σ count`` as a float64 division.

    Raises:
        ValueError: no counts, or counts that add up to 0.
    """
    total = sum(int(c) for c in counts)
    if total <= 0:
        raise ValueError(f"cohort counts {list(counts)} add up to {total}; FedAvg weights need a positive total")
    return [int(c) / total for c in counts]


def equal_weights(m: int) -> list[float]:
    """``m`` weights of ``1 / m`` (float64), the mean of differential privacy."""
    if m <= 0:
        raise ValueError(f"an equal-weight mean of {m} updates; expected at least one")
    return [1.0 / m] * m


def weighted_sum(arrays: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``w1·x1 + w2·x2 + …`` in float64, summed left to right in the order given.

    Raises:
        ValueError: a different number of arrays and weights, or no arrays.
    """
    pairs = list(zip(arrays, weights, strict=True))
    if not pairs:
        raise ValueError("a weighted sum of no arrays; expected at least one")
    first, w = pairs[0]
    acc = np.asarray(first, dtype=np.float64) * np.float64(w)
    for array, w in pairs[1:]:
        acc = acc + np.asarray(array, dtype=np.float64) * np.float64(w)
    return acc


def fedavg(updates: list[list[np.ndarray]], counts: list[int]) -> list[np.ndarray]:
    """The mean of ``updates`` (one list of arrays per hospital) weighted by each hospital's cohort size.

    Each layer is :func:`weighted_sum` of the hospitals' layers with :func:`fedavg_weights`,
    cast to the first update's dtype for that layer.

    Raises:
        ValueError: a different number of updates and counts (from ``zip``), or counts adding up to 0.
    """
    weights = fedavg_weights(counts)
    return [weighted_sum([u[i] for u in updates], weights).astype(updates[0][i].dtype)
            for i in range(len(updates[0]))]


def delta_norm(sent: Sequence[np.ndarray], update: Sequence[np.ndarray]) -> float:
    """The L2 norm over all layers of ``update - sent``: each difference and its square in float64, the squares
    added with ``math.fsum`` (correctly rounded, in no particular order), then the square root."""
    squares = itertools.chain.from_iterable(
        np.square(np.asarray(u, np.float64) - np.asarray(s, np.float64)).ravel().tolist()
        for u, s in zip(update, sent, strict=True))
    return math.sqrt(math.fsum(squares))


def clip_factor(norm: float, clipping_norm: float) -> float:
    """What a difference of L2 norm ``norm`` is multiplied by to lie within ``clipping_norm``: 1.0 when it
    does already, else ``clipping_norm / norm`` (a float64 division)."""
    return 1.0 if norm <= clipping_norm else clipping_norm / norm
