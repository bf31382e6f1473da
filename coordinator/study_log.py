"""The coordinator's record of a study: ``study.json`` next to its models, format ``metai-study-log`` version 1.

The ServerApp writes it after every round and when a run ends (coordinator/federation.py;
until the end ``final_model_hash`` is empty). The coordinator service shows it live; the model
card, the demo, the federated benchmark and the end-to-end tests read it with
:func:`read_study_log`, which refuses a file of another format or version instead of guessing
at its keys. Layout::

    {"format": "metai-study-log", "version": 1,
     "study_id": 2, "task": "ct-sinogram-lesion-v1",
     "held_out": {"examples": 48, "seed": 990001},        # the set every round is evaluated on
     "rounds": [{"round": 1, "contributors": [...], "cohort_counts": [...], "refused": [...],
                 "synthetic_counts": {hospital: n}, "model_hash": "0x…",
                 "eval": {"loss": …, "accuracy": …, "examples": …}, "block": 108,
                 "privacy": null | {"milli_epsilon": …, "epsilon_total": …},
                 "seconds": …, "server_seconds": {step: s}, "node_seconds": {hospital: {step: s}}}, …],
     "final_model_hash": "0x…", "stopped": "",            # why it stopped early, if it did
     "privacy": null | {"epsilon": …, "delta": …, "milli_epsilon_recorded": …,
                        "budget_milli_epsilon": …, "noise_multiplier": …, "clipping_norm": …}}
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coordinator.errors import CoordinatorError

__all__ = ["FINAL_MODEL", "FORMAT", "VERSION", "HeldOut", "RoundPrivacy", "RoundRecord", "StudyLog", "StudyLogError",
           "StudyPrivacy", "final_model", "read_study_log", "round_model", "study_folder"]

FORMAT = "metai-study-log"
VERSION = 1
FILE_NAME = "study.json"
#: The final model's file in a study's folder; each round's is ``round-<r>.npz`` (:func:`round_model`).
FINAL_MODEL = "final.npz"


def study_folder(model_dir: Path, study_id: int) -> Path:
    """The folder of study ``study_id`` under the coordinator's model directory (models, ``study.json``, card)."""
    return model_dir / f"study-{study_id}"


def round_model(folder: Path, round_: int) -> Path:
    """The aggregated model of round ``round_`` in a study's folder."""
    return folder / f"round-{round_}.npz"


def final_model(folder: Path) -> Path:
    """The final model in a study's folder."""
    return folder / FINAL_MODEL


class StudyLogError(CoordinatorError, ValueError):
    """A study record that cannot be read: missing, not JSON, another format or version, or malformed."""


@dataclass(frozen=True)
class HeldOut:
    """The held-out set every round's model is evaluated on: the task's synthetic examples of ``seed``."""

    examples: int
    seed: int


@dataclass(frozen=True)
class RoundPrivacy:
    """What a round spent under differential privacy."""

    milli_epsilon: int
    epsilon_total: float


@dataclass
class RoundRecord:
    """One round as the coordinator ran it."""

    round: int
    contributors: list[str]
    cohort_counts: list[int]
    refused: list[str]
    synthetic_counts: dict[str, int | None]
    model_hash: str
    eval: dict[str, float]
    block: int | None
    privacy: RoundPrivacy | None
    seconds: float
    server_seconds: dict[str, float]
    node_seconds: dict[str, dict[str, float]]


@dataclass(frozen=True)
class StudyPrivacy:
    """The run's differential privacy: the accountant's epsilon and what the chain records."""

    epsilon: float
    delta: float
    milli_epsilon_recorded: int
    budget_milli_epsilon: int
    noise_multiplier: float
    clipping_norm: float


@dataclass
class StudyLog:
    """What happened in a run of a study, round by round."""

    study_id: int
    task: str
    held_out: HeldOut
    rounds: list[RoundRecord] = field(default_factory=list)
    final_model_hash: str = ""
    stopped: str = ""
    privacy: StudyPrivacy | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as ``study.json`` holds it."""
        return {"format": FORMAT, "version": VERSION, **dataclasses.asdict(self)}

    def write(self, folder: Path) -> Path:
        """Write ``folder/study.json`` (atomically: a reader never sees half a file); return its path."""
        path = folder / FILE_NAME
        tmp = path.with_name(f".{FILE_NAME}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path


def read_study_log(path: Path) -> StudyLog:
    """Read a ``study.json`` (or the ``study.json`` in folder ``path``).

    Raises:
        StudyLogError: the file is missing or not JSON, names another format or version, or
            lacks a field of this version.
    """
    if path.is_dir():
        path = path / FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudyLogError(f"{path}: no such study record") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudyLogError(f"{path}: not a readable JSON study record ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise StudyLogError(f"{path}: format {found!r}, expected {FORMAT!r} (a study record the coordinator wrote)")
    if data.get("version") != VERSION:
        raise StudyLogError(f"{path}: {FORMAT} version {data.get('version')!r}; this build reads version {VERSION}")
    try:
        return StudyLog(
            study_id=int(data["study_id"]),
            task=str(data["task"]),
            held_out=HeldOut(**data["held_out"]),
            rounds=[_round(r) for r in data["rounds"]],
            final_model_hash=str(data["final_model_hash"]),
            stopped=str(data["stopped"]),
            privacy=None if data["privacy"] is None else StudyPrivacy(**data["privacy"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise StudyLogError(f"{path}: malformed {FORMAT} version {VERSION} ({exc!r})") from None


def _round(data: dict[str, Any]) -> RoundRecord:
    values = {f.name: data[f.name] for f in dataclasses.fields(RoundRecord)}
    privacy = values["privacy"]
    values["privacy"] = None if privacy is None else RoundPrivacy(**privacy)
    return RoundRecord(**values)
