"""A round's model recomputed from the updates the bundle keeps, and its privacy spent re-accounted.

The arithmetic follows docs/formats/lineage-bundle.md exactly, so the recomputed model must equal
the bundle's ``model.npz`` bit for bit and hash to the model the chain recorded for the round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from eth_utils.address import to_checksum_address

from audit.accountant import ACCOUNTANT, epsilon
from audit.bundle import Bundle
from audit.events import Event
from audit.hashing import weights_hash
from audit.report import Report

__all__ = ["check_round", "clipped_mean", "weighted_mean"]

Arrays = list[np.ndarray]
#: Relative tolerance of the noise's measured standard deviation against the one the settings imply.
NOISE_TOLERANCE = 0.2
#: Fewest noise values for the standard-deviation check to mean anything.
NOISE_MIN_VALUES = 1_000


def weighted_mean(updates: list[Arrays], weights: list[float]) -> Arrays:
    """FedAvg: per array, the sum over hospitals of ``update * weight``, in the update's dtype."""
    return [np.sum([u[i] * w for u, w in zip(updates, weights, strict=True)], axis=0).astype(updates[0][i].dtype)
            for i in range(len(updates[0]))]


def clipped_mean(sent: Arrays, updates: list[Arrays], clipping_norm: float) -> Arrays:
    """Each update's difference from ``sent`` scaled to an L2 norm of at most ``clipping_norm``, then averaged."""
    deltas = []
    for update in updates:
        delta = [u.astype(np.float64) - s.astype(np.float64) for u, s in zip(update, sent, strict=True)]
        norm = math.sqrt(sum(float(np.sum(d * d)) for d in delta))
        scale = min(1.0, clipping_norm / norm) if norm > 0 else 1.0
        deltas.append([d * scale for d in delta])
    return [np.mean([d[i] for d in deltas], axis=0) for i in range(len(sent))]


def check_round(bundle: Bundle, rounds: Mapping[int, Event], round_: int,
                contributions: Mapping[tuple[int, str], Event], privacy_budget: int, report: Report) -> None:
    """Round ``round_``'s aggregation.json, model and privacy spending against the updates and the chain."""
    where = f"round {round_}"
    record = rounds[round_]
    name = f"rounds/{round_}/aggregation.json"
    if not report.check("aggregation.present", bundle.has(name), where, f"{name} missing or altered"):
        return
    agg = bundle.json(name)
    run = bundle.json("run.json") if bundle.has("run.json") else None
    if not report.check("aggregation.run", run is not None, "run.json", "missing or altered"):
        return
    assert run is not None
    on_chain = [to_checksum_address(h) for h in record.args["contributors"]]
    listed = [to_checksum_address(h) for h in agg.get("contributors", [])]
    report.check("aggregation.contributors", sorted(listed) == sorted(on_chain), where,
                 f"aggregation.json aggregates {listed}, the chain recorded {on_chain}")
    counts = [int(contributions[(round_, h)].args["cohortCount"]) if (round_, h) in contributions else -1
              for h in listed]
    report.check("aggregation.counts", list(agg.get("cohort_counts", [])) == counts, where,
                 f"aggregation.json counts {agg.get('cohort_counts')}, the chain anchored {counts}")
    sent_name = "initial.npz" if round_ == 1 else f"rounds/{round_ - 1}/model.npz"
    model_name = f"rounds/{round_}/model.npz"
    names = [f"rounds/{round_}/updates/{h}.npz" for h in listed]
    if not all(bundle.has(n) for n in (sent_name, model_name, *names)):
        report.fail("aggregation.inputs", where, "a model or update file needed to recompute the round is missing "
                    "or altered (see the bundle.file findings)")
        return
    sent, model = bundle.arrays(sent_name), bundle.arrays(model_name)
    updates = [bundle.arrays(n) for n in names]
    recorded_hash = bytes(record.args["modelHash"])
    report.check("model.round", weights_hash(model) == recorded_hash, where,
                 f"{model_name} hashes to 0x{weights_hash(model).hex()}, the chain recorded 0x{recorded_hash.hex()}")
    dp = run.get("dp")
    if dp is None:
        total = sum(counts)
        expected = [c / total for c in counts] if total > 0 else []
        report.check("aggregation.weights", list(agg.get("weights", [])) == expected, where,
                     f"weights {agg.get('weights')}; FedAvg by cohort size gives {expected}")
        recomputed: Arrays | None = weighted_mean(updates, expected)
    else:
        recomputed = _private(bundle, round_, sent, updates, dp, agg, report)
        _check_privacy(rounds, round_, dp, agg, privacy_budget, report)
    if recomputed is None:
        return
    same = len(recomputed) == len(model) and all(
        r.dtype == m.dtype and r.shape == m.shape and np.array_equal(r, m) for r, m in zip(recomputed, model,
                                                                                         strict=False))
    report.check("aggregation.model", same, where,
                 f"the model recomputed from the {len(updates)} updates (hash 0x{weights_hash(recomputed).hex()}) is "
                 f"not {model_name}")


def _private(bundle: Bundle, round_: int, sent: Arrays, updates: list[Arrays], dp: Mapping[str, object],
             agg: Mapping[str, object], report: Report) -> Arrays | None:
    where = f"round {round_}"
    noise_name = f"rounds/{round_}/noise.npz"
    if not report.check("privacy.noise_present", bundle.has(noise_name), where, f"{noise_name} missing or altered"):
        return None
    noise = bundle.arrays(noise_name)
    clip = float(dp["clipping_norm"])  # type: ignore[arg-type]
    z = float(dp["noise_multiplier"])  # type: ignore[arg-type]
    mean = clipped_mean(sent, updates, clip)
    values = np.concatenate([n.astype(np.float64).ravel() for n in noise])
    expected_std = z * clip / len(updates)
    if values.size >= NOISE_MIN_VALUES and expected_std > 0:
        measured = float(np.std(values))
        report.check("privacy.noise", abs(measured - expected_std) <= NOISE_TOLERANCE * expected_std, where,
                     f"the noise added has standard deviation {measured:.4g}; noise multiplier {z} x clipping norm "
                     f"{clip} / {len(updates)} hospitals implies {expected_std:.4g}")
    else:
        report.note(f"round {round_}: {values.size} noise values, too few to measure their spread")
    return [(s.astype(np.float64) + m + n.astype(np.float64)).astype(s.dtype)
            for s, m, n in zip(sent, mean, noise, strict=True)]


def _check_privacy(rounds: Mapping[int, Event], round_: int, dp: Mapping[str, object], agg: Mapping[str, object],
                   budget: int, report: Report) -> None:
    where = f"round {round_}"
    report.check("privacy.accountant", dp.get("accountant") == ACCOUNTANT, "run.json",
                 f"accountant {dp.get('accountant')!r}; this audit recomputes with {ACCOUNTANT!r}")
    total = epsilon(float(dp["noise_multiplier"]), round_, float(dp["delta"]))  # type: ignore[arg-type]
    recorded = sum(int(rounds[r].args["privacySpent"]) for r in range(1, round_ + 1) if r in rounds)
    report.check("privacy.chain", recorded == math.ceil(total * 1000), where,
                 f"the chain records {recorded} milli-epsilon after {round_} round(s); the accountant gives epsilon "
                 f"{total:.6f}, {math.ceil(total * 1000)} milli-epsilon rounded up")
    claimed = agg.get("epsilon_after")
    report.check("privacy.bundle", isinstance(claimed, (int, float)) and math.isclose(float(claimed), total,
                                                                                     rel_tol=1e-9), where,
                 f"aggregation.json says epsilon {claimed} after this round; the accountant gives {total:.6f}")
    report.check("privacy.budget", recorded <= budget, where, f"{recorded} milli-epsilon spent of a budget of {budget}")
