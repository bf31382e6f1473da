"""The run's tunables: the names of ``[tool.flwr.app.config]`` and the config the ServerApp builds from them.

Every program that sets a run config value (``deploy study ... --set NAME=VALUE``, the demo,
the benchmarks) spells its name through :class:`RunConfigName`; the ServerApp turns the run
config into a :class:`FederationConfig` in one place, :meth:`FederationConfig.from_run_config`.
A test checks that pyproject.toml gives a default for every name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum

from coordinator.errors import CoordinatorError


class RunConfigError(CoordinatorError, ValueError):
    """The run config lacks a name, or holds a value of another type."""


class RunConfigName(StrEnum):
    """The names of ``[tool.flwr.app.config]`` (pyproject.toml, where each is explained)."""

    STUDY_ID = "study-id"
    TASK = "task"
    MIN_NODES = "min-nodes"
    LOCAL_EPOCHS = "local-epochs"
    LR = "lr"
    BATCH_SIZE = "batch-size"
    PROXIMAL_MU = "proximal-mu"
    POLL_INTERVAL = "poll-interval"
    REPLY_PULL_BACKOFF = "reply-pull-backoff"
    ROUND_TIMEOUT = "round-timeout"
    WAIT_NODES = "wait-nodes"
    ROUND_DELAY = "round-delay"
    EVAL_EXAMPLES = "eval-examples"
    EVAL_SEED = "eval-seed"
    DP_NOISE_MULTIPLIER = "dp-noise-multiplier"
    DP_CLIPPING_NORM = "dp-clipping-norm"
    DP_DELTA = "dp-delta"
    ROBUSTNESS_PATIENTS = "robustness-patients-per-cell"


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
    #: Seconds the ServerApp first waits for a reply object not yet at the SuperLink (Flower: 1 s).
    reply_pull_backoff: float = 0.05

    @classmethod
    def from_run_config(cls, run_config: Mapping[str, object], *, anchor: bool = True) -> FederationConfig:
        """The config a run config gives (every :class:`RunConfigName` must be in it).

        Raises:
            RunConfigError: a name is missing, or its value is not of the field's type (an
                integer is taken where a float is expected, never the other way round).
        """
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, object] = {}
        for name in RunConfigName:
            field = name.name.lower()
            if name not in run_config:
                raise RunConfigError(f"the run config lacks {name.value!r}; see [tool.flwr.app.config]")
            values[field] = _typed(name, run_config[name], str(kinds[field]))
        return cls(**values, anchor=anchor)  # type: ignore[arg-type]


def _typed(name: RunConfigName, value: object, kind: str) -> object:
    if kind == "str" and isinstance(value, str):
        return value
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise RunConfigError(f"run config {name.value} = {value!r}; expected {'a number' if kind != 'str' else 'text'}"
                         f"{' (a whole number)' if kind == 'int' else ''}")
