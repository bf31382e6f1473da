"""The privacy accountant an audit recomputes epsilon with.

The coordinator accounts each round as one release of the Gaussian mechanism over the
hospitals' clipped, averaged updates, without sampling amplification (every hospital takes part
in every round), neighbouring datasets differing by adding or removing one hospital, in Google's
``dp_accounting`` RDP accountant with its default orders (what Flower's ``RdpAccountant`` wraps).
The bundle names this accountant ``rdp-gaussian/1``; the audit composes the same releases in that
same library, directly.
"""

from __future__ import annotations

import math

__all__ = ["ACCOUNTANT", "epsilon", "milli_epsilon_total"]

#: The accountant's name as the lineage bundle's ``run.json`` records it.
ACCOUNTANT = "rdp-gaussian/1"


def epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """Epsilon after ``releases`` rounds of Gaussian noise ``noise_multiplier``, at ``delta`` (0 for none)."""
    if releases == 0:
        return 0.0
    import dp_accounting
    from dp_accounting.rdp import rdp_privacy_accountant

    accountant = rdp_privacy_accountant.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier), releases)
    return float(accountant.get_epsilon(delta))


def milli_epsilon_total(noise_multiplier: float, releases: int, delta: float) -> int:
    """The milli-epsilon the chain must hold after ``releases`` rounds: epsilon x 1000, rounded up."""
    return math.ceil(epsilon(noise_multiplier, releases, delta) * 1000)
