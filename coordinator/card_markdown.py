"""Render a model card's JSON content as ``model-card.md``: the same facts, for people.

Every value in the markdown comes from the card's JSON (coordinator/model_card.py), so the two
files cannot disagree; numbers are printed with enough digits to be compared with a
recomputation (metrics to 4 decimals, hashes in full).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["render_markdown"]

# GA4GH Data Use Ontology terms of contracts.datause.Purpose, in words.
_PURPOSES = {"GRU": "general research use", "HMB": "health, medical or biomedical research",
             "DS": "disease-specific research"}


def _number(value: object, digits: int = 4) -> str:
    if value is None:
        return "not reported"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _share(value: object) -> str:
    return "not reported" if value is None else f"{float(value):.1%}"  # type: ignore[arg-type]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _overview(card: dict[str, Any]) -> list[str]:
    study, task, privacy = card["study"], card["task"], card["privacy"]
    purpose = f"{study['purpose']} ({_PURPOSES.get(study['purpose'], 'see contracts.datause.Purpose')})"
    if study["disease"] is not None:
        purpose += f", disease code {study['disease']}"
    budget = ("no differential privacy (no budget requested)" if not privacy["differential_privacy"] else
              f"budget epsilon {privacy['budget_epsilon']:g}, spent {privacy['epsilon_spent_on_chain']:g} "
              f"(on chain, rounded up per round); accountant {_number(privacy['epsilon_accountant'])} at delta "
              f"{privacy['delta']}, noise multiplier {privacy['noise_multiplier']}, clipping norm "
              f"{privacy['clipping_norm']}")
    lines = [f"# Model card: study {study['id']}", "",
             f"Status on chain: **{study['status']}** after {study['rounds_completed']} of "
             f"{study['rounds_requested']} rounds (requested in block {study['requested_block']}, started in block "
             f"{study['started_block']}, completed in block {study['completed_block']}).", "",
             "Facts marked *on chain* were read back from the chain's events when this card was written, and "
             "every model file was re-hashed against them; held-out metrics and synthetic-record counts are not "
             "on chain and come from the coordinator's evaluation and the hospitals' reports.", "",
             "## Task and purpose", ""]
    lines += _table(["field", "value"], [
        ("task", f"`{task['code']}`: {task['description']}"),
        ("task code hash (on chain)", f"`{task['code_hash_on_chain']}`"),
        ("task code hash of this build", f"`{task['code_hash_of_this_build']}` "
                                         f"({'matches' if task['code_hash_matches'] else 'DIFFERS from'} the chain)"),
        ("model input", f"{task['data_kind']} records ({', '.join(task['record_formats'])}), shape "
                        f"{tuple(task['input_shape'])}"),
        ("data kinds requested", ", ".join(study["data_kinds"])),
        ("purpose", purpose),
        ("researcher", f"`{study['researcher']}`"),
        ("privacy", budget),
    ])
    lines += ["## Hospitals", ""]
    lines += _table(["hospital", "approved in block"],
                    [(f"`{h['address']}`", _number(h["approved_block"])) for h in card["hospitals"]])
    return lines


def _rounds(card: dict[str, Any]) -> list[str]:
    held = card["held_out_set"]
    lines = ["## Rounds", "",
             f"Held-out set: {held.get('examples')} virtual patients, seed {held.get('seed')} "
             f"(`{held['made_by']}`); {held['note']}.", ""]
    lines += _table(
        ["round", "block", "model hash (on chain)", "held-out loss", "held-out accuracy", "records",
         "synthetic share", "epsilon spent"],
        [(r["round"], r["block"], f"`{r['model_hash']}`", _number(r["held_out"].get("loss")),
          _number(r["held_out"].get("accuracy")), r["records"], _share(r["synthetic_share"]),
          f"{r['privacy_spent_epsilon']:g}") for r in card["rounds"]])
    for r in card["rounds"]:
        if not r["held_out_source"].startswith("the coordinator's evaluation"):
            lines += [f"Round {r['round']}'s held-out figures were {r['held_out_source']} (it was trained before "
                      "this run resumed the study).", ""]
    lines += ["Each hospital's anchored contribution (cohort count, root and block as the chain holds them; "
              "synthetic records as the hospital reported them):", ""]
    lines += _table(
        ["round", "hospital", "cohort count", "cohort root", "block", "synthetic records"],
        [(r["round"], f"`{c['hospital']}`", c["cohort_count"], f"`{c['cohort_root']}`", c["block"],
          _number(c["synthetic_records_reported"])) for r in card["rounds"] for c in r["contributions"]])
    lines += [f"![training curves]({card['training_curves_png']})", ""]
    return lines


def _synthetic(card: dict[str, Any]) -> list[str]:
    data = card["synthetic_data"]
    lines = ["## Synthetic data", "",
             f"Summed over the rounds, the cohorts held {data['records_trained_on']} records (a record used in "
             f"every round counts once per round), of which {_number(data['synthetic_records_reported'])} were "
             f"synthetic ({_share(data['share'])}) as the hospitals' nodes counted them from their catalogs.", "",
             "Datasets the study's hospitals registered on chain (with the chain's synthetic flag):", ""]
    lines += _table(["dataset", "hospital", "records", "synthetic", "modality", "kinds", "block"],
                    [(d["dataset_id"], f"`{d['hospital']}`", d["records"], "yes" if d["synthetic"] else "no",
                      d["modality"], ", ".join(d["data_kinds"]), d["block"]) for d in data["registered_datasets"]]
                    or [("none", "", "", "", "", "", "")])
    return lines


def _model(card: dict[str, Any]) -> list[str]:
    model = card["model"]
    return ["## The model and its hash", "",
            f"File `{model['file']}` next to this card. Weights hash (recomputed from the file): "
            f"`{model['weights_hash']}`; on chain: `{model['weights_hash_on_chain']}`.", "",
            f"How the hash is computed: {model['hash_note']}. File sha256: `{model['file_sha256']}`.", "",
            "Recompute it:", "", "```", model["hash_command"], "```", "",
            f"Load it with `{model['loader']}`:", "", "```python", model["example"], "```", ""]


def _robustness(card: dict[str, Any]) -> list[str]:
    section = card.get("robustness") or {}
    lines = ["## Robustness across virtual scanners", ""]
    if not section.get("available"):
        return [*lines, f"{section.get('note', 'robustness evaluation not available in this build')}.", ""]
    lines += [f"The final model on held-out virtual patients (seed {section.get('seed')}) scanned by every "
              f"scanner profile at several doses, by lesion size and contrast, and by subgroup "
              f"({section['note']}).", "", section["table_markdown"].rstrip(), ""]
    if section.get("heatmap_png"):
        lines += [f"![robustness heat map]({section['heatmap_png']})", ""]
    return lines


def render_markdown(card: dict[str, Any]) -> str:
    """Return ``model-card.md`` for a card's JSON content (as :func:`coordinator.model_card.build_card` makes it)."""
    lines = _overview(card) + _rounds(card) + _synthetic(card) + _model(card) + _robustness(card)
    if card.get("stopped_early"):
        lines += ["## Stopped early", "", str(card["stopped_early"]), ""]
    return "\n".join(lines)
