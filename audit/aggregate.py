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

__all__ = ["check_round", "clip_factor", "delta_norm", "private_mean", "weighted_mean", "weighted_sum"]

Arrays = list[np.ndarray]
#: Relative tolerance of the noise's measured standard deviation against the one the settings imply.
NOISE_TOLERANCE = 0.2
#: Fewest noise values for the standard-deviation check to mean anything.
NOISE_MIN_VALUES = 1_000


#: The slack the coordinator allows over the clipping norm, for the nodes' float32 arithmetic; it
#: scales what it takes back to the norm exactly (:func:`clip_factor`).
CLIP_SLACK = 1e-4


def weighted_sum(layers: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """``w1*x1``, then ``acc + wi*xi`` in the order given, element by element in float64."""
    acc = np.asarray(layers[0], dtype=np.float64) * np.float64(weights[0])
    for layer, w in zip(layers[1:], weights[1:], strict=True):
        acc = acc + np.asarray(layer, dtype=np.float64) * np.float64(w)
    return acc


def weighted_mean(updates: list[Arrays], weights: list[float]) -> Arrays:
    """FedAvg: each layer the weighted sum of the hospitals' layers, cast to the layer's dtype."""
    return [weighted_sum([u[i] for u in updates], weights).astype(updates[0][i].dtype)
            for i in range(len(updates[0]))]


def private_mean(sent: Arrays, updates: list[Arrays], factors: list[float], noise: Arrays) -> Arrays:
    """Under differential privacy: ``(sent + Σ (1/m)((update - sent)·f)) + noise`` per layer, in float64, cast
    back; ``f`` is each update's clip factor."""
    m = len(updates)
    out = []
    for k, s in enumerate(sent):
        base = np.asarray(s, dtype=np.float64)
        acc = weighted_sum([(np.asarray(u[k], dtype=np.float64) - base) * np.float64(f)
                            for u, f in zip(updates, factors, strict=True)], [1.0 / m] * m)
        out.append(((base + acc) + np.asarray(noise[k], dtype=np.float64)).astype(s.dtype))
    return out


def delta_norm(sent: Arrays, update: Arrays) -> float:
    """The L2 norm, over all layers, of ``update - sent``: the squares of the float64 differences added with
    ``math.fsum`` (correctly rounded, so the same on every machine), then the square root."""
    total = math.fsum(x for u, s in zip(update, sent, strict=True)
                      for x in np.square(np.asarray(u, np.float64) - np.asarray(s, np.float64)).ravel().tolist())
    return math.sqrt(total)


def clip_factor(norm: float, clip: float) -> float:
    """1.0 for a difference within the clipping norm, else ``clip / norm``: what scales it onto the norm."""
    return 1.0 if norm <= clip else clip / norm


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
    listed: list[str] = [to_checksum_address(h) for h in agg.get("contributors", [])]
    report.check("aggregation.contributors", sorted(listed) == sorted(on_chain), where,
                 f"aggregation.json aggregates {listed}, the chain recorded {on_chain}")
    counts = [int(contributions[(round_, h)].args["cohortCount"]) if (round_, h) in contributions else -1
              for h in listed]
    report.check("aggregation.counts", list(agg.get("cohort_counts", [])) == counts, where,
                 f"aggregation.json counts {agg.get('cohort_counts')}, the chain anchored {counts}")
    sent_name = "initial.npz" if round_ == 1 else f"rounds/{round_ - 1}/model.npz"
    report.check("aggregation.sent", agg.get("sent") == sent_name, where,
                 f"aggregation.json says the round sent {agg.get('sent')!r}; the round before it made {sent_name!r}")
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
        m = len(updates)
        report.check("aggregation.weights", list(agg.get("weights", [])) == [1.0 / m] * m, where,
                     f"weights {agg.get('weights')}; under differential privacy every update weighs 1/{m}")
        recomputed = _private(bundle, round_, sent, updates, listed, dp, report)
        _check_privacy(rounds, round_, dp, agg, privacy_budget, report)
    if recomputed is None:
        return
    same = len(recomputed) == len(model) and all(
        r.dtype == m.dtype and r.shape == m.shape and np.array_equal(r, m) for r, m in zip(recomputed, model,
                                                                                         strict=False))
    report.check("aggregation.model", same, where,
                 f"the model recomputed from the {len(updates)} updates (hash 0x{weights_hash(recomputed).hex()}) is "
                 f"not {model_name}")


def _private(bundle: Bundle, round_: int, sent: Arrays, updates: list[Arrays], hospitals: list[str],
             dp: Mapping[str, object], report: Report) -> Arrays | None:
    where = f"round {round_}"
    noise_name = f"rounds/{round_}/noise.npz"
    if not report.check("privacy.noise_present", bundle.has(noise_name), where, f"{noise_name} missing or altered"):
        return None
    noise = bundle.arrays(noise_name)
    clip = float(dp["clipping_norm"])  # type: ignore[arg-type]
    z = float(dp["noise_multiplier"])  # type: ignore[arg-type]
    factors = []
    for hospital, update in zip(hospitals, updates, strict=True):
        norm = delta_norm(sent, update)
        report.check("privacy.clipping", norm <= clip * (1 + CLIP_SLACK), f"{where}, hospital {hospital}",
                     f"the update differs from the model sent by an L2 norm of {norm:.6g}, over the clipping norm "
                     f"{clip}: it was not clipped")
        factors.append(clip_factor(norm, clip))
    recorded = bundle.json(f"rounds/{round_}/aggregation.json").get("clip_factors")
    try:
        same = isinstance(recorded, list) and [float(f) for f in recorded] == factors
    except (TypeError, ValueError):
        same = False
    report.check("privacy.clip_factors", same, where,
                 f"aggregation.json says the updates were scaled by {recorded}; their norms give {factors}")
    values = np.concatenate([n.astype(np.float64).ravel() for n in noise])
    expected_std = z * clip / len(updates)
    if values.size >= NOISE_MIN_VALUES and expected_std > 0:
        measured = float(np.std(values))
        report.check("privacy.noise", abs(measured - expected_std) <= NOISE_TOLERANCE * expected_std, where,
                     f"the noise added has standard deviation {measured:.4g}; noise multiplier {z} x clipping norm "
                     f"{clip} / {len(updates)} hospitals implies {expected_std:.4g}")
    else:
        report.note(f"round {round_}: {values.size} noise values, too few to measure their spread")
    return private_mean(sent, updates, factors, noise)


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
