"""Whole studies run through ``run_study`` against the session's Anvil chain, with scripted nodes,
for the lineage bundle's tests: three hospitals of cohort sizes 1, 3 and 7 (FedAvg weights 1/11,
3/11 and 7/11, none exact in binary), the first sending its cohort manifest, the second moving a
little past the clipping norm (within the float32 slack, so the DP runs scale it back), the third
failing in round 2."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from flwr.app import Message

from contracts.exchange import Exchange
from coordinator.federation import run_study
from coordinator.lineage import bundle_folder
from coordinator.run_config import FederationConfig
from coordinator.study_log import study_folder
from tasks import load_weights
from tests.conftest import Actors
from tests.coordinator.round_replies import (
    ROOT_A,
    ScriptedGrid,
    anchor,
    config,
    error_reply,
    manifest,
    reply,
    running_study,
)

TASK = "ct-sinogram-lesion-v1"
COUNTS = (1, 3, 7)
#: The L2 distance of every update from the model sent: within the clipping norm of the DP runs.
STEP = 0.5
NOISE, CLIPPING = 2.0, 1.0


@contextmanager
def grid_identity() -> Iterator[None]:
    """What the ServerApp runtime sets before ``run_study`` builds messages."""
    from flwr.supercore.task_identity import TaskIdentity

    with pytest.MonkeyPatch.context() as patch:
        for name in ("_run_id", "_node_id", "_task_id"):
            patch.setattr(TaskIdentity, name, 1)
        yield


def trained(sent: list[np.ndarray], node: int, round_: int, step: float = STEP) -> list[np.ndarray]:
    """A node's update: the model sent moved by ``step`` in a direction of its own."""
    rng = np.random.default_rng(1000 * round_ + node)
    deltas = [rng.normal(0.0, 1.0, s.shape) for s in sent]
    norm = float(np.sqrt(sum(float(np.sum(d * d)) for d in deltas)))
    return [(s.astype(np.float64) + d * (step / norm)).astype(s.dtype) for s, d in zip(sent, deltas, strict=True)]


@dataclass
class Nodes:
    """The three hospitals' nodes: each anchors its update, then replies (the third fails from round 2)."""

    exchange: Exchange
    study_id: int
    hospitals: tuple[LocalAccount, ...]
    #: Whether the nodes anchor (as they do whenever the coordinator does).
    anchoring: bool = True

    def __call__(self, node: int, round_: int, sent: list[np.ndarray]) -> Message | None:
        if node == 3 and round_ >= 2:
            return error_reply("cohort of 7 below the hospital's minimum today", node_id=3, round_=round_)
        account, count = self.hospitals[node - 1], COUNTS[node - 1]
        # The second moves as far as the clipping norm and a little past it, as a node's float32 clipping can.
        weights = trained(sent, node, round_, CLIPPING * (1 + 3e-5) if node == 2 else STEP)
        # A round run again after a coordinator crash was anchored already: the contract takes one contribution.
        if self.anchoring and self.exchange.studies.contribution_of(self.study_id, round_, account.address) is None:
            anchor(self.exchange, account, self.study_id, round_, weights, count)
        text = manifest(self.study_id, round_, account.address, ROOT_A, count) if node == 1 else None
        return reply(account.address, weights, count, node_id=node, round_=round_, manifest=text)


@dataclass(frozen=True)
class Run:
    """A study run to completion: its id, config, bundle folder and grid."""

    study_id: int
    cfg: FederationConfig
    bundle: Path
    grid: ScriptedGrid


def start_study(exchange: Exchange, actors: Actors, *, dp: bool, rounds: int = 2) -> tuple[int, FederationConfig]:
    """A running study of the three hospitals and the config of its run (DP or not)."""
    from tasks import task_code_hash

    study_id = running_study(exchange, actors.researcher, actors.coordinator,
                             [actors.hospital, actors.hospital2, actors.outsider_hospital], rounds=rounds,
                             privacy_budget=50_000 if dp else 0, task_code_hash=task_code_hash(TASK))
    cfg = config(study_id, min_nodes=2, noise=NOISE if dp else 0.0, clipping=CLIPPING)
    return study_id, replace(cfg, robustness_patients=4, wait_nodes=5)


def run(exchange: Exchange, actors: Actors, model_dir: Path, study_id: int, cfg: FederationConfig) -> Run:
    """Run ``study_id`` with the three scripted nodes until it completes (or a test makes it fail)."""
    grid = ScriptedGrid([1, 2, 3], Nodes(exchange, study_id, (actors.hospital, actors.hospital2,
                                                              actors.outsider_hospital), cfg.anchor))
    with grid_identity():
        run_study(grid, cfg, exchange, actors.coordinator, model_dir)  # type: ignore[arg-type]
    return Run(study_id, cfg, bundle_folder(study_folder(model_dir, study_id)), grid)


def load_json(path: Path) -> Any:
    """The JSON file at ``path``."""
    return json.loads(path.read_bytes())


def recomputed_model(bundle: Path, round_: int, settings: dict[str, Any]) -> list[np.ndarray]:
    """Round ``round_``'s model from the bundle alone, computed as docs/formats/lineage-bundle.md says (not with
    coordinator/aggregation.py): float64, contributors in the order listed, left to right, cast at the end."""
    aggregation = load_json(bundle / f"rounds/{round_}/aggregation.json")
    updates = [load_weights(bundle / f"rounds/{round_}/updates/{h}.npz") for h in aggregation["contributors"]]
    weights = [float(w) for w in aggregation["weights"]]
    sent = load_weights(bundle / aggregation["sent"])
    if settings["dp"] is None:
        total = sum(aggregation["cohort_counts"])
        assert weights == [c / total for c in aggregation["cohort_counts"]]
    else:
        assert weights == [1 / len(updates)] * len(updates)
    noise = load_weights(bundle / aggregation["noise"]) if settings["dp"] is not None else None
    factors = [1.0] * len(updates)
    if noise is not None:  # each difference scaled onto the clipping norm if its float64 L2 norm exceeds it
        clip = settings["dp"]["clipping_norm"]
        norms = [math.sqrt(math.fsum(float(x) ** 2 for u_, s_ in zip(u, sent, strict=True)
                                     for x in (u_.astype(np.float64) - s_.astype(np.float64)).ravel()))
                 for u in updates]
        factors = [1.0 if n <= clip else clip / n for n in norms]
        assert aggregation["clip_factors"] == factors
    else:
        assert aggregation["clip_factors"] is None
    out = []
    for layer, base in enumerate(sent):
        terms = [u[layer].astype(np.float64) for u in updates]
        if noise is not None:
            terms = [(t - base.astype(np.float64)) * f for t, f in zip(terms, factors, strict=True)]
        acc = terms[0] * weights[0]
        for term, weight in zip(terms[1:], weights[1:], strict=True):
            acc = acc + term * weight
        if noise is not None:
            assert noise[layer].dtype == np.float64
            acc = (base.astype(np.float64) + acc) + noise[layer]
        out.append(acc.astype(base.dtype))
    return out
