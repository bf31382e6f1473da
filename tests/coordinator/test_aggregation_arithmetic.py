"""The aggregate's arithmetic is the one docs/formats/lineage-bundle.md fixes, operation for operation:
checked bit for bit against the same formula in plain Python floats (IEEE binary64, one rounding
per operation), with enough contributors that pairwise summation or float32 products would differ."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coordinator.aggregation import fedavg, fedavg_weights, weighted_sum
from coordinator.privacy import private_mean
from tests.coordinator.round_replies import config

COUNTS = [3, 1, 7, 2, 9, 4, 4, 11, 5, 6, 13]  # 11 hospitals: np.sum over 11 values is pairwise, not left to right


def _updates(seed: int, shapes: list[tuple[int, ...]], m: int) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [[rng.normal(0.0, 3.0, shape).astype(np.float32) for shape in shapes] for _ in range(m)]


def _python_sum(values: list[float], weights: list[float]) -> float:
    acc = values[0] * weights[0]
    for value, weight in zip(values[1:], weights[1:], strict=True):
        acc = acc + value * weight
    return acc


def test_fedavg_weights_are_the_float64_quotients_of_the_counts() -> None:
    assert fedavg_weights(COUNTS) == [c / 65 for c in COUNTS]
    with pytest.raises(ValueError, match=r"cohort counts \[0, 0\] add up to 0"):
        fedavg_weights([0, 0])


def test_fedavg_is_the_left_to_right_float64_weighted_sum_cast_at_the_end() -> None:
    updates = _updates(7, [(), (37,), (3, 4)], len(COUNTS))
    for u in updates:
        u.append(u[1].astype(np.float64) / 3)  # a float64 layer shows every last bit
    got = fedavg(updates, COUNTS)
    weights = [c / sum(COUNTS) for c in COUNTS]
    for layer in range(4):
        flat = [u[layer].reshape(-1) for u in updates]
        dtype = updates[0][layer].dtype
        expected = np.array([_python_sum([float(f[k]) for f in flat], weights) for k in range(flat[0].size)],
                            dtype=np.float64).astype(dtype).reshape(updates[0][layer].shape)
        assert got[layer].dtype == dtype
        assert got[layer].tobytes() == expected.tobytes()


@pytest.mark.parametrize("clipping", [1e6, 2.0], ids=["within the norm", "scaled back to it"])
def test_the_private_aggregate_is_sent_plus_the_float64_mean_of_clipped_differences_plus_the_noise_returned(
        clipping: float) -> None:
    # A float64 layer shows every last bit (a float32 cast would hide most differences of order).
    sent = [np.float32(0.25) * np.ones((), np.float32), np.linspace(-1, 1, 29, dtype=np.float64)]
    updates = [[s + u for s, u in zip(sent, d, strict=True)] for d in _updates(8, [(), (29,)], 9)]
    cfg = config(1, noise=1.3, clipping=clipping)
    noisy = private_mean(sent, updates, cfg, np.random.default_rng(3))
    assert noisy.update_weights == [1 / 9] * 9
    # Each factor from the norm in plain floats: differences, squares, a correctly rounded sum, its root.
    factors = []
    for u in updates:
        diffs = [float(x) - float(b) for layer, base in zip(u, sent, strict=True)
                 for x, b in zip(layer.reshape(-1), np.broadcast_to(base, layer.shape).reshape(-1), strict=True)]
        norm = math.sqrt(math.fsum(d * d for d in diffs))
        factors.append(1.0 if norm <= clipping else clipping / norm)
    assert noisy.clip_factors == factors
    assert (factors == [1.0] * 9) == (clipping == 1e6)  # the second case does scale every update
    drawn = np.random.default_rng(3)
    for layer, base in enumerate(sent):
        assert noisy.noise[layer].tobytes() == drawn.normal(0.0, 1.3 * clipping / 9, base.shape).tobytes()
        flat_base = base.reshape(-1)
        flat_noise = noisy.noise[layer].reshape(-1)
        expected = []
        for k in range(flat_base.size):
            b = float(flat_base[k])
            mean = _python_sum([(float(u[layer].reshape(-1)[k]) - b) * f
                                for u, f in zip(updates, factors, strict=True)], [1 / 9] * 9)
            expected.append((b + mean) + float(flat_noise[k]))
        want = np.array(expected, dtype=np.float64).astype(base.dtype).reshape(base.shape)
        assert noisy.weights[layer].tobytes() == want.tobytes()


def test_a_weighted_sum_needs_one_weight_per_array() -> None:
    with pytest.raises(ValueError, match="zip"):
        weighted_sum([np.zeros(2), np.zeros(2)], [1.0])
    with pytest.raises(ValueError, match="a weighted sum of no arrays"):
        weighted_sum([], [])
