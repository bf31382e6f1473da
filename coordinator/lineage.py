"""A study's lineage bundle (format ``metai-lineage/1``), written as the study runs.

The bundle is the folder ``lineage/`` in the study's folder (``<model dir>/study-<id>/lineage``)
and holds what an auditor needs, besides the chain, to recompute every round: the run's
settings, the model sent in round 1, and per round each accepted hospital's update as received,
its cohort manifest, how the round was aggregated, the noise added and the model. The layout,
the JSON files and the arithmetic are specified in docs/formats/lineage-bundle.md.

A round is written into a hidden temporary folder and renamed into place in one step, before
the round is anchored, so a crash leaves either the whole round or none of it. A run that
starts at round ``k`` (a study resumed after a restart, ``k - 1`` rounds on chain) keeps the
files of rounds before ``k`` as they are and drops anything later, which no anchor covers.
:func:`finish_bundle` writes the index, ``bundle.json``, whose keccak256 is the lineage hash
anchored at completion.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from eth_utils.crypto import keccak

from coordinator.errors import CoordinatorError
from coordinator.run_config import FederationConfig

if TYPE_CHECKING:  # the service reads bundles without importing Flower, the tasks or torch
    from coordinator.rounds import RoundOutcome

__all__ = ["ACCOUNTANT", "BUNDLE_FORMAT", "FOLDER", "INDEX", "LineageError", "begin_bundle", "bundle_folder",
           "canonical_json", "file_sha256", "finish_bundle", "held_manifests", "read_index", "round_model_of",
           "run_settings", "write_round"]

BUNDLE_FORMAT = "metai-lineage/1"
#: The bundle's folder in a study's folder.
FOLDER = "lineage"
INDEX = "bundle.json"
RUN = "run.json"
INITIAL = "initial.npz"
FINAL = "final.npz"
#: The privacy accountant of coordinator/privacy.py: Flower's RDP accountant, one Gaussian release
#: per round, add-or-remove-one hospital, no sampling amplification.
ACCOUNTANT = "rdp-gaussian/1"
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class LineageError(CoordinatorError, ValueError):
    """A bundle that cannot be continued or read: files missing, or settings other than the run's."""


def bundle_folder(study_folder: Path) -> Path:
    """The lineage bundle's folder in a study's folder."""
    return study_folder / FOLDER


def round_model_of(folder: Path, round_: int) -> Path:
    """Round ``round_``'s model in the bundle ``folder``."""
    return folder / "rounds" / str(round_) / "model.npz"


def run_settings(cfg: FederationConfig, hospitals: int) -> dict[str, Any]:
    """What ``run.json`` holds for a run of ``cfg`` in a study naming ``hospitals`` hospitals."""
    dp = None
    if cfg.dp_noise_multiplier > 0:
        dp = {"clipping_norm": cfg.dp_clipping_norm, "noise_multiplier": cfg.dp_noise_multiplier,
              "delta": cfg.dp_delta, "accountant": ACCOUNTANT, "sample_rate": 1.0, "population": hospitals}
    return {"task": cfg.task, "strategy": "fedprox" if cfg.proximal_mu > 0 else "fedavg",
            "proximal_mu": cfg.proximal_mu, "local_epochs": cfg.local_epochs, "lr": cfg.lr,
            "batch_size": cfg.batch_size, "dp": dp}


def canonical_json(value: Any) -> bytes:
    """``value`` as canonical JSON: keys sorted, ``","`` and ``":"`` separators, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def file_sha256(path: Path) -> str:
    """The SHA-256 of the file at ``path``, lowercase hex."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def begin_bundle(folder: Path, run: dict[str, Any], first_round: int, initial: list[np.ndarray] | None) -> None:
    """Make ``folder`` ready for rounds ``first_round`` onward.

    Round 1: write ``run.json`` and ``initial.npz`` (the model sent in round 1), replacing any.
    A later round: keep the earlier rounds' files untouched after checking they are all there
    and that ``run.json`` holds ``run``. Either way, the rounds from ``first_round`` on, the
    final model, the index and temporary files left by a crash are removed: no anchor covers them.

    Raises:
        LineageError: resuming, a file of an earlier round is missing, or the run's settings
            differ from the ones the earlier rounds ran with.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rounds = folder / "rounds"
    for stale in [folder / INDEX, folder / FINAL, *_temporary(folder), *_temporary(rounds)]:
        _remove(stale)
    if rounds.is_dir():
        for entry in rounds.iterdir():
            if entry.name.isdigit() and int(entry.name) >= first_round:
                _remove(entry)
    if first_round == 1:
        if initial is None:
            raise ValueError("round 1 needs the model it sends, for initial.npz")
        _write_bytes(folder / RUN, canonical_json(run))
        _write_weights(folder / INITIAL, initial)
        return
    missing = [name for name in [RUN, INITIAL] + [f"rounds/{r}/{f}" for r in range(1, first_round)
                                                   for f in ("aggregation.json", "model.npz")]
               if not (folder / name).is_file()]
    if missing:
        raise LineageError(f"{folder}: the lineage bundle lacks {', '.join(missing[:6])}"
                           f"{' and more' if len(missing) > 6 else ''}; a study resumed at round {first_round} "
                           "needs the files of its earlier rounds: restore the study's folder from a backup")
    kept = json.loads((folder / RUN).read_bytes())
    if kept != run:
        changed = sorted(k for k in set(kept) | set(run) if kept.get(k) != run.get(k))
        raise LineageError(f"{folder}: the earlier rounds ran with other settings ({', '.join(changed)}: "
                           f"{[kept.get(k) for k in changed]} then, {[run.get(k) for k in changed]} now); launch the "
                           "study again with the settings it started with")


def write_round(folder: Path, round_: int, outcome: RoundOutcome, model_hash: bytes, *,
                milli_epsilon: int = 0, epsilon: float = 0.0) -> Path:
    """Write round ``round_``'s files into ``folder/rounds/<round_>`` in one step; return that folder.

    Parameters:
        folder: the bundle.
        round_: the round.
        outcome: the round's accepted contributions (in the order aggregated), their weights,
            the noise (under DP) and the model.
        model_hash: ``weights_hash`` of the model.
        milli_epsilon: what the round records on chain as spent (0 without DP).
        epsilon: the study's total epsilon after the round (0 without DP).

    Raises:
        LineageError: a contributor is not an address (it names a file).
    """
    target = folder / "rounds" / str(round_)
    work = target.with_name(f".{round_}.tmp-{os.getpid()}")
    _remove(work)
    (work / "updates").mkdir(parents=True)
    (work / "cohorts").mkdir()
    missing: list[str] = []
    held: dict[str, str] = {}
    for c in outcome.accepted:
        if not _ADDRESS.fullmatch(c.hospital):
            raise LineageError(f"contributor {c.hospital!r} is not an address; it cannot name a file of the bundle")
        _write_weights(work / "updates" / f"{c.hospital}.npz", c.weights)
        if c.manifest is not None:
            _write_bytes(work / "cohorts" / f"{c.hospital}.json", c.manifest.encode())
        elif c.manifest_sha256 is not None:
            held[c.hospital] = c.manifest_sha256
        else:
            missing.append(c.hospital)
    if outcome.noise is not None:
        _write_weights(work / "noise.npz", outcome.noise)
    _write_weights(work / "model.npz", outcome.weights)
    aggregation = {
        "round": round_, "sent": INITIAL if round_ == 1 else f"rounds/{round_ - 1}/model.npz",
        "contributors": [c.hospital for c in outcome.accepted],
        "cohort_counts": [c.cohort_count for c in outcome.accepted],
        "weights": list(outcome.update_weights),
        "clip_factors": None if outcome.clip_factors is None else list(outcome.clip_factors),
        "noise": f"rounds/{round_}/noise.npz" if outcome.noise is not None else None,
        "manifests_missing": missing, "manifests_held": held, "refused": list(outcome.refused),
        "model_hash": "0x" + model_hash.hex(),
        "epsilon_after": float(epsilon), "milli_epsilon_spent": int(milli_epsilon),
    }
    _write_bytes(work / "aggregation.json", canonical_json(aggregation))
    _sync_dir(work / "updates")
    _sync_dir(work / "cohorts")
    _sync_dir(work)
    _remove(target)  # a round run twice in one process (never by federation.py) is replaced whole
    work.rename(target)
    _sync_dir(target.parent)
    return target


def finish_bundle(folder: Path, final: list[np.ndarray], final_hash: bytes, *, chain_id: int, registry: str,
                  study_id: int, rounds: int) -> bytes:
    """Write ``final.npz`` and the index ``bundle.json``; return the lineage hash, keccak256 of the index.

    The index lists every file here and, by the hash its node sent, every cohort manifest a hospital
    in sealed mode holds (``manifests_held`` of each round's ``aggregation.json``): the anchor then
    covers those bytes too, and an auditor who gets them from the hospital can check them.
    """
    _write_weights(folder / FINAL, final)
    files = {path.relative_to(folder).as_posix(): file_sha256(path)
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != INDEX}
    files.update(held_manifests(folder, rounds))
    index = {"format": BUNDLE_FORMAT, "chain_id": chain_id, "study_registry": registry, "study_id": study_id,
             "rounds": rounds, "final_model_hash": "0x" + final_hash.hex(), "files": files}
    data = canonical_json(index)
    _write_bytes(folder / INDEX, data)
    return keccak(data)


def held_manifests(folder: Path, rounds: int) -> dict[str, str]:
    """The cohort manifests of rounds 1 to ``rounds`` that hospitals in sealed mode hold: each one's name in
    the bundle and the SHA-256 its node sent (``manifests_held`` of the rounds' ``aggregation.json``).

    Raises:
        LineageError: a round's ``aggregation.json`` is missing or is not JSON.
    """
    held = {}
    for round_ in range(1, rounds + 1):
        path = folder / "rounds" / str(round_) / "aggregation.json"
        try:
            aggregation = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise LineageError(f"{path} is missing or unreadable ({exc})") from None
        for hospital, digest in aggregation.get("manifests_held", {}).items():
            held[f"rounds/{round_}/cohorts/{hospital}.json"] = digest
    return held


def read_index(folder: Path) -> tuple[bytes, dict[str, Any]]:
    """The bundle's index: its bytes (their keccak256 is the lineage hash) and its content.

    Raises:
        LineageError: no index, or one that is not a ``metai-lineage/1`` index listing files.
    """
    path = folder / INDEX
    try:
        data = path.read_bytes()
        index = json.loads(data)
    except FileNotFoundError:
        raise LineageError(f"{path}: no lineage index; the study has not completed here") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LineageError(f"{path}: not a readable lineage index ({exc})") from None
    if not isinstance(index, dict) or index.get("format") != BUNDLE_FORMAT or not isinstance(index.get("files"), dict):
        raise LineageError(f"{path}: not a {BUNDLE_FORMAT} index")
    return data, index


def _write_weights(path: Path, weights: list[np.ndarray]) -> None:
    from tasks import save_weights

    save_weights(path, weights)  # arrays w0000, w0001, ..., written to a temporary file and renamed
    _fsync(path)


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):  # the write's own error is the one to see
            tmp.unlink()
        raise
    _sync_dir(path.parent)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(path: Path) -> None:
    # A rename is durable once its folder is synced; without it a power cut can undo it.
    _fsync(path)


def _temporary(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
