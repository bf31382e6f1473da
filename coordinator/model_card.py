"""The model card of a study: what a researcher or regulator reads first, next to the final model.

For every completed study the coordinator writes, in the study's model folder,

- ``model-card.json`` (format ``metai-model-card``, version 1): every fact, machine-readable;
- ``model-card.md``: the same content for people (rendered from the JSON, coordinator/card_markdown.py);
- ``training-curves.png``: held-out loss and accuracy per round;
- ``robustness-heatmap.png``: the final model across virtual scanners and doses, when the build
  has the robustness evaluation (coordinator/card_robustness.py).

Facts the chain holds (request, hospitals and approvals, task code hash, each round's cohort
commitments and model hash, epsilon recorded, final model hash, datasets and their synthetic
flag) are read back from the chain's events (coordinator/card_chain.py) and every model file is
re-hashed; where the coordinator's own record disagrees with the chain, no card is written and
:class:`ModelCardError` names the difference. What the chain cannot hold (held-out metrics,
the share of synthetic records in each cohort as the hospital reports it) comes from the
coordinator's study record and is labelled with its source. docs/model-card.md explains
every field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.datause import Kind, Purpose
from contracts.exchange import Exchange
from coordinator.card_chain import RoundOnChain, StudyOnChain, read_study_on_chain
from coordinator.card_markdown import render_markdown
from coordinator.card_plots import plot_training_curves
from coordinator.card_robustness import RobustnessSection, robustness_section
from coordinator.errors import ModelCardError
from coordinator.model_loader import file_sha256, load_model, model_hash
from coordinator.study_log import FINAL_MODEL, HeldOut, RoundRecord, StudyLog, StudyPrivacy, final_model, round_model

__all__ = ["CARD_FORMAT", "CARD_JSON", "CARD_MD", "CARD_VERSION", "CURVES_PNG", "ModelCardFiles", "build_card",
           "read_card", "robustness_json", "write_model_card"]

CARD_FORMAT = "metai-model-card"
CARD_VERSION = 1
CARD_JSON = "model-card.json"
CARD_MD = "model-card.md"
CURVES_PNG = "training-curves.png"


@dataclass(frozen=True)
class ModelCardFiles:
    """Where a study's card went, and what it says in short (for a terminal)."""

    markdown: Path
    json: Path
    curves_png: Path
    heatmap_png: Path | None
    final_accuracy: float | None
    robustness_short: list[tuple[str, str]]


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def _kinds(kinds: Kind) -> list[str]:
    return [k.name or str(int(k)) for k in Kind if k in kinds]


def _study_section(chain: StudyOnChain) -> dict[str, Any]:
    record, requested = chain.record, chain.requested
    purpose = Purpose(record.purpose)
    return {
        "id": record.study_id, "status": record.status.name, "researcher": record.researcher,
        "purpose": purpose.name, "disease": record.disease if purpose == Purpose.DS else None,
        "data_kinds": _kinds(record.kinds), "rounds_requested": record.rounds,
        "rounds_completed": record.rounds_completed, "requested_block": requested.block_number,
        "requested_tx": requested.tx_hash, "started_block": chain.started_block,
        "completed_block": chain.completed.block_number if chain.completed else None,
        "completed_tx": chain.completed.tx_hash if chain.completed else None,
    }


def _task_section(code: str, chain: StudyOnChain) -> dict[str, Any]:
    from tasks import get_task, task_code_hash

    task = get_task(code)
    here = _hex(task_code_hash(code))
    on_chain = _hex(chain.record.task_code_hash)
    return {"code": code, "description": task.spec.description, "data_kind": Kind(task.spec.kind).name,
            "input_shape": list(task.input_shape), "record_formats": list(task.formats),
            "code_hash_on_chain": on_chain, "code_hash_of_this_build": here, "code_hash_matches": here == on_chain}


def _privacy_section(chain: StudyOnChain, logged: StudyPrivacy | None) -> dict[str, Any]:
    budget = chain.record.privacy_budget
    recorded = sum(r.privacy_spent_milli for r in chain.rounds)
    if recorded != chain.record.privacy_spent:
        raise ModelCardError(f"study {chain.record.study_id}: rounds record {recorded} milli-epsilon in their events, "
                             f"the registry stores {chain.record.privacy_spent}; the chain's history is inconsistent")
    return {
        "differential_privacy": budget > 0,
        "budget_epsilon": budget / 1000 if budget else None,
        "epsilon_spent_on_chain": recorded / 1000,
        "epsilon_accountant": logged.epsilon if logged else None,
        "delta": logged.delta if logged else None,
        "noise_multiplier": logged.noise_multiplier if logged else None,
        "clipping_norm": logged.clipping_norm if logged else None,
    }


def _share(synthetic: int | None, total: int) -> float | None:
    return None if synthetic is None or total == 0 else synthetic / total


def _re_evaluate(saved: Path, code: str, held_out: HeldOut) -> dict[str, Any]:
    """Evaluate a saved round model on the held-out set (a round this run's record does not hold)."""
    from tasks import evaluate, get_task

    inputs, labels = get_task(code).synthetic_examples(held_out.examples, held_out.seed)
    return dict(evaluate(load_model(saved, code), inputs, labels))


def _round_section(on_chain: RoundOnChain, logged: RoundRecord | None, out_dir: Path, code: str,
                   held_out_set: HeldOut) -> dict[str, Any]:
    """One round of the card; ``logged`` is None for a round an earlier run trained (a resumed study)."""
    r = on_chain.round
    if logged is not None and logged.model_hash.lower() != _hex(on_chain.model_hash):
        raise ModelCardError(f"round {r}: the coordinator's record says model {logged.model_hash}, the chain "
                             f"says {_hex(on_chain.model_hash)}; the card states only what the chain confirms")
    saved = round_model(out_dir, r)
    if model_hash(saved) != _hex(on_chain.model_hash):
        raise ModelCardError(f"{saved}: weights hash to {model_hash(saved)}, the chain's round {r} model is "
                             f"{_hex(on_chain.model_hash)}; the saved model was altered or belongs to another study")
    reported: dict[str, int | None] = logged.synthetic_counts if logged is not None else {}
    contributions: list[dict[str, Any]] = []
    for c in sorted(on_chain.contributions, key=lambda c: c.hospital.lower()):
        value = reported.get(c.hospital)
        synthetic = None if value is None else int(value)
        if synthetic is not None and not 0 <= synthetic <= c.cohort_count:
            raise ModelCardError(f"round {r}: hospital {c.hospital} reports {synthetic} synthetic records in a "
                                 f"cohort of {c.cohort_count} (on chain)")
        contributions.append({"hospital": c.hospital, "cohort_count": c.cohort_count,
                              "cohort_root": _hex(c.cohort_root), "block": c.block, "tx": c.tx_hash,
                              "update_hash": _hex(c.update_hash), "synthetic_records_reported": synthetic})
    counts: list[int | None] = [c.get("synthetic_records_reported") for c in contributions]
    total = sum(c.cohort_count for c in on_chain.contributions)
    synthetic_total = None if any(v is None for v in counts) else sum(v or 0 for v in counts)
    if logged is None:  # the same deterministic evaluation the coordinator runs after each round
        source, metrics = "re-evaluated from the saved round model when the card was written", \
            _re_evaluate(saved, code, held_out_set)
    else:
        source, metrics = "the coordinator's evaluation after the round", dict(logged.eval)
    held_out = {k: v for k, v in metrics.items() if k in ("loss", "accuracy", "examples")}
    return {"round": r, "block": on_chain.block, "tx": on_chain.tx_hash, "model_hash": _hex(on_chain.model_hash),
            "model_file": saved.name, "contributors": len(on_chain.contributors), "records": total,
            "synthetic_records_reported": synthetic_total, "synthetic_share": _share(synthetic_total, total),
            "privacy_spent_epsilon": on_chain.privacy_spent_milli / 1000, "held_out": held_out,
            "held_out_source": source, "contributions": contributions}


def _model_section(code: str, chain: StudyOnChain, out_dir: Path, held_out: HeldOut) -> dict[str, Any]:
    final = final_model(out_dir)
    recomputed = model_hash(final)
    anchored = _hex(chain.record.final_model_hash)
    example = ("from pathlib import Path\n"
               "from coordinator.model_loader import load_model\n"
               "from tasks import evaluate, get_task\n"
               f"model = load_model(Path({FINAL_MODEL!r}), {code!r}, expected_hash={recomputed!r})\n"
               "# model(batch) -> one logit per input (> 0: lesion); batch: float32 (n, *input_shape)\n"
               f"inputs, labels = get_task({code!r}).synthetic_examples({held_out.examples}, "
               f"{held_out.seed})  # the held-out set\n"
               "print(evaluate(model, inputs, labels))  # loss, accuracy, examples of the last round above")
    if recomputed != anchored:
        raise ModelCardError(f"{final}: weights hash to {recomputed}, the chain's final model of study "
                             f"{chain.record.study_id} is {anchored}")
    return {
        "file": FINAL_MODEL, "weights_hash": recomputed, "weights_hash_on_chain": anchored,
        "file_sha256": file_sha256(final),
        "hash_note": ("the hash on chain is tasks.weights_hash over the weight arrays (keccak256 of a canonical "
                      "serialisation of dtypes, shapes and values), not the sha256 of the .npz file; file_sha256 "
                      "only checks a download"),
        "hash_command": f"python -m coordinator.model_loader {FINAL_MODEL}",
        "loader": "coordinator.model_loader.load_model(path, task, expected_hash=None)",
        "example": example,
    }


def _synthetic_section(chain: StudyOnChain, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    records = sum(r["records"] for r in rounds)
    reported = [r["synthetic_records_reported"] for r in rounds]
    synthetic = None if any(v is None for v in reported) else sum(reported)
    datasets = [{"dataset_id": d.dataset_id, "hospital": d.hospital, "records": d.record_count,
                 "synthetic": d.synthetic, "modality": d.modality, "data_kinds": _kinds(d.kinds),
                 "block": d.block_number} for d in chain.datasets]
    return {"records_trained_on": records, "synthetic_records_reported": synthetic,
            "share": _share(synthetic, records), "registered_datasets": datasets}


def build_card(exchange: Exchange, study_log: StudyLog, out_dir: Path) -> dict[str, Any]:
    """Assemble the card's JSON content from the chain, the coordinator's study record and the model files.

    Parameters:
        exchange: the deployment's contracts.
        study_log: the coordinator's record of the study (``study.json``, see coordinator/study_log.py).
        out_dir: the study's model folder (``final.npz``, ``round-<r>.npz``).

    Returns:
        The card without its ``robustness`` section (see :func:`robustness_json`).

    Raises:
        ModelCardError: the study is not on chain, the record disagrees with the chain, or a
            model file does not hash to what the chain anchored.
    """
    study_id = study_log.study_id
    code = study_log.task
    chain = read_study_on_chain(exchange, study_id)
    logged_rounds = {r.round: r for r in study_log.rounds}
    held_out = study_log.held_out
    rounds = [_round_section(on_chain, logged_rounds.get(on_chain.round), out_dir, code, held_out)
              for on_chain in chain.rounds]
    return {
        "format": CARD_FORMAT, "version": CARD_VERSION,
        "study": _study_section(chain),
        "task": _task_section(code, chain),
        "hospitals": [{"address": h, "approved_block": chain.approvals.get(h)} for h in chain.requested.hospitals],
        "privacy": _privacy_section(chain, study_log.privacy),
        "held_out_set": {
            "examples": held_out.examples, "seed": held_out.seed,
            "made_by": f"tasks.get_task({code!r}).synthetic_examples({held_out.examples}, {held_out.seed})",
            "note": ("virtual patients made by the coordinator from the task's digital phantoms with this seed, "
                     "not taken from any hospital's records"),
        },
        "rounds": rounds,
        "synthetic_data": _synthetic_section(chain, rounds),
        "model": _model_section(code, chain, out_dir, held_out),
        "training_curves_png": CURVES_PNG,
        "stopped_early": study_log.stopped or None,
    }


def robustness_json(section: RobustnessSection, seed: int) -> dict[str, Any]:
    """Return the card's ``robustness`` section for ``section`` evaluated with ``seed``."""
    return {"available": section.available, "note": section.note, "seed": seed, "report": section.report,
            "table_markdown": section.table_markdown, "short_table": [list(row) for row in section.short_table],
            "heatmap_png": section.heatmap}


def write_model_card(exchange: Exchange, study_log: StudyLog, out_dir: Path, weights: list[np.ndarray], *,
                     robustness_seed: int, robustness_patients: int = 0) -> ModelCardFiles:
    """Write ``model-card.json``, ``model-card.md`` and the PNGs of a completed study into ``out_dir``.

    Parameters:
        exchange: the deployment's contracts.
        study_log: the coordinator's record of the study (``study.json``).
        out_dir: the study's model folder, holding ``final.npz`` and ``round-<r>.npz``.
        weights: the final model's weights (for the robustness evaluation).
        robustness_seed: seed of the robustness evaluation's virtual patients.
        robustness_patients: virtual patients per robustness cell (0: the evaluation's default).

    Returns:
        The paths written and a short summary for a terminal.

    Raises:
        ModelCardError: see :func:`build_card`; no file is written then.
    """
    card = build_card(exchange, study_log, out_dir)  # checked against the chain before anything is written
    section = robustness_section(study_log.task, weights, out_dir, seed=robustness_seed,
                                 patients_per_cell=robustness_patients)
    evaluated = (section.report or {}).get("weights_hash")
    if evaluated is not None and str(evaluated).lower() != card["model"]["weights_hash"]:
        raise ModelCardError(f"the robustness report evaluated model {evaluated}, the final model is "
                             f"{card['model']['weights_hash']}; it belongs to another model")
    card["robustness"] = robustness_json(section, robustness_seed)
    rounds = card["rounds"]
    plot_training_curves(out_dir / CURVES_PNG, [r["round"] for r in rounds],
                         [float(r["held_out"].get("loss", float("nan"))) for r in rounds],
                         [float(r["held_out"].get("accuracy", float("nan"))) for r in rounds],
                         title=f"study {card['study']['id']}: {card['task']['code']} (held-out set)")
    json_path, md_path = out_dir / CARD_JSON, out_dir / CARD_MD
    json_path.write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    md_path.write_text(render_markdown(card), encoding="utf-8")
    accuracy = rounds[-1]["held_out"].get("accuracy") if rounds else None
    return ModelCardFiles(md_path, json_path, out_dir / CURVES_PNG,
                          out_dir / section.heatmap if section.heatmap else None,
                          None if accuracy is None else float(accuracy), section.short_table)


def read_card(path: Path) -> dict[str, Any]:
    """Read a ``model-card.json`` and check its format and version.

    Raises:
        ModelCardError: missing, not JSON, or not a ``metai-model-card`` of version 1.
    """
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelCardError(f"{path}: cannot be read as a model card ({exc})") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT or card.get("version") != CARD_VERSION:
        found = (card.get("format"), card.get("version")) if isinstance(card, dict) else type(card).__name__
        raise ModelCardError(f"{path}: is {found}, expected format {CARD_FORMAT!r} version {CARD_VERSION}")
    return card
