"""Differential privacy of a study: the epsilon its rounds spend and the noisy mean of their updates.

Central DP with clipping on both sides: the nodes clip their update to ``dp_clipping_norm`` (in
float32, so a clipped difference may come out a few ulps longer); the coordinator refuses one
clearly longer (a node that did not clip), scales each difference it keeps to at most ``C``
exactly in float64 (:func:`~coordinator.aggregation.clip_factor`), so that the sensitivity the
accountant assumes holds, averages them with equal weights and adds Gaussian noise of standard
deviation ``z * C / m`` for ``m`` averaged updates. Flower's RDP accountant composes one
Gaussian release per round (hospital-level neighbouring, no sampling amplification: every node
takes part); each round records the epsilon it spent, in milli-epsilon rounded up, and the study
stops before a round that would take the total over the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from coordinator.aggregation import clip_factor, delta_norm, equal_weights, weighted_sum
from coordinator.errors import StudyAborted
from coordinator.run_config import FederationConfig

#: How far past the clipping norm a node's update may lie and still be taken (then scaled back to it):
#: room for the nodes' float32 clipping, whose result's float64 norm can exceed the norm by a few ulps.
#: An update further out comes from a node that did not clip, and is refused.
CLIP_SLACK = 1e-4


class PrivacyLedger:
    """Epsilon spent by the study's rounds, accounted with Flower's RDP accountant."""

    def __init__(self, cfg: FederationConfig, budget_milli: int, hospitals: int, rounds_done: int) -> None:
        from flwr.serverapp import GaussianPrivacyEvent
        from flwr.supercore.privacy_accounting import NeighboringRelation, PrivacyConfig, SamplingMethod
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

        self.budget_milli = budget_milli
        self.accountant = RdpAccountant(PrivacyConfig(
            target_delta=cfg.dp_delta, population_size=hospitals,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION))
        self.event = GaussianPrivacyEvent(noise_multiplier=cfg.dp_noise_multiplier, sample_size=hospitals,
                                          population_size=hospitals)
        if rounds_done:  # a resumed study: its earlier rounds were released with the same noise
            self.accountant.compose(self.event, rounds_done)

    def epsilon(self) -> float:
        """Total epsilon spent so far (0 before any round)."""
        if self.accountant.num_releases == 0:
            return 0.0
        return self.accountant.get_epsilon(self.accountant.config.target_delta)

    def next_round_fits(self) -> bool:
        """Whether one more round keeps the total within the budget as the chain records it.

        The chain records milli-epsilon rounded up, so the test is on the rounded total: a round
        that would take it to exactly the budget fits, one more milli-epsilon does not.
        """
        return math.ceil(self._projected() * 1000) <= self.budget_milli

    def _projected(self) -> float:
        from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

        probe = RdpAccountant(self.accountant.config)
        probe.compose(self.event, self.accountant.num_releases + 1)
        return probe.get_epsilon(self.accountant.config.target_delta)

    def spend_round(self, recorded_milli: int) -> tuple[int, float]:
        """Compose one round; return its milli-epsilon (so the chain total covers the total) and the total."""
        self.accountant.compose(self.event)
        total = self.epsilon()
        return max(0, math.ceil(total * 1000) - recorded_milli), total



def privacy_ledger(cfg: FederationConfig, budget_milli: int, hospitals: int, rounds_done: int) -> PrivacyLedger | None:
    """The study's privacy ledger, or None without DP; refuse a run that does not match the study."""
    if budget_milli == 0:
        if cfg.dp_noise_multiplier > 0:
            raise StudyAborted(f"study {cfg.study_id} has no privacy budget on chain, so its rounds cannot record "
                               "the epsilon they spend: launch it with dp-noise-multiplier = 0, or request a study "
                               "with a budget")
        return None
    if cfg.dp_noise_multiplier <= 0:
        raise StudyAborted(f"study {cfg.study_id} was approved with differential privacy (budget epsilon "
                           f"{budget_milli / 1000:g}): launch it with dp-noise-multiplier > 0")
    if cfg.dp_clipping_norm <= 0 or not 0 < cfg.dp_delta < 1:
        raise StudyAborted(f"dp-clipping-norm must be > 0 and dp-delta in (0, 1), got {cfg.dp_clipping_norm} "
                           f"and {cfg.dp_delta}")
    return PrivacyLedger(cfg, budget_milli, hospitals, rounds_done)



@dataclass(frozen=True)
class NoisyMean:
    """A private round's aggregate and the exact noise added to it (kept in the lineage bundle)."""

    #: The model: each layer in the dtype of the model sent.
    weights: list[np.ndarray]
    #: The Gaussian noise added to each layer, float64, as drawn.
    noise: list[np.ndarray]
    #: The weight of each update in the mean, ``1 / m`` each (float64).
    update_weights: list[float]
    #: What each update's difference from the model sent was multiplied by to lie within the
    #: clipping norm: 1.0 for one within it already (float64).
    clip_factors: list[float]


def private_mean(sent: list[np.ndarray], updates: list[list[np.ndarray]], cfg: FederationConfig,
                 rng: np.random.Generator | None = None) -> NoisyMean:
    """Equal-weight mean of clipped updates plus Gaussian noise of std ``z * C / m``.

    Each update's difference from ``sent`` is first given its clip factor ``f`` (1.0, or ``C``
    over its :func:`~coordinator.aggregation.delta_norm` when that is above ``C``). Then layer by
    layer, in float64 and in this order (coordinator/aggregation.py): the differences
    ``(update - sent) * f`` (both widened to float64), their
    :func:`~coordinator.aggregation.weighted_sum` with weights ``1 / m``, ``sent`` plus that
    mean, plus the noise drawn for the layer; the result is cast to the layer's dtype. The
    noise is drawn layer after layer in model order, each as ``rng.normal(0, z * C / m, shape)``.
    ``rng`` None seeds a generator from the operating system's secure source.
    """
    if rng is None:
        rng = np.random.default_rng()  # seeded from the operating system's entropy source
    std = cfg.dp_noise_multiplier * cfg.dp_clipping_norm / len(updates)
    weights = equal_weights(len(updates))
    factors = [clip_factor(delta_norm(sent, u), cfg.dp_clipping_norm) for u in updates]
    out, noise = [], []
    for i, base in enumerate(sent):
        wide = base.astype(np.float64)
        mean = weighted_sum([(u[i].astype(np.float64) - wide) * f for u, f in zip(updates, factors, strict=True)],
                            weights)
        drawn = rng.normal(0.0, std, base.shape)
        out.append(((wide + mean) + drawn).astype(base.dtype))
        noise.append(drawn)
    return NoisyMean(out, noise, weights, factors)
