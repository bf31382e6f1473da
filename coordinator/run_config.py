"""The run's tunables: what the coordinator reads from ``[tool.flwr.app.config]`` and its own settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FederationConfig:
    """The run's tunables (``[tool.flwr.app.config]``)."""

    study_id: int
    task: str
    min_nodes: int
    local_epochs: int
    lr: float
    batch_size: int
    proximal_mu: float
    poll_interval: float
    round_timeout: float
    wait_nodes: float
    round_delay: float
    eval_examples: int
    eval_seed: int
    #: Gaussian noise multiplier z of central DP; 0 turns DP off.
    dp_noise_multiplier: float = 0.0
    #: L2 norm the nodes clip their update to, C.
    dp_clipping_norm: float = 1.0
    #: The delta at which epsilon is accounted.
    dp_delta: float = 1e-5
    #: Anchor on chain (the coordinator's own setting, never the run config); off only to
    #: measure what anchoring costs.
    anchor: bool = True
    #: Virtual patients per cell of the model card's robustness table; 0 takes the evaluation's default.
    robustness_patients: int = 0

