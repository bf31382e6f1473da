"""Load a study's model file into its task's model, and recompute the hash the chain anchors.

A study's models are ``.npz`` files of weight arrays (``tasks.save_weights``). The hash on
chain is ``tasks.weights_hash`` over the arrays -- a canonical serialisation of dtypes, shapes
and values -- not the sha256 of the file: two files holding the same arrays (compressed or
not, written by another numpy) have the same on-chain hash. The model itself is built by the
task registry (``tasks.get_task(code).build_model()``), so the architecture is never
re-implemented here.

Recompute a model's on-chain hash from the command line::

    python -m coordinator.model_loader run/demo/models/study-2/final.npz
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from coordinator.errors import ModelCardError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["file_sha256", "load_model", "model_hash", "read_weights"]


def read_weights(path: Path) -> list[np.ndarray]:
    """Return the weight arrays stored in ``path`` (``tasks.load_weights``), in order.

    Raises:
        tasks.WeightsError: the file is missing, truncated or not a weights ``.npz``.
    """
    from tasks import load_weights

    return load_weights(path)


def model_hash(path: Path) -> str:
    """Return ``0x`` + the on-chain hash (``tasks.weights_hash``) of the weights stored in ``path``.

    Raises:
        tasks.WeightsError: the file is missing or not a weights ``.npz``.
    """
    from tasks import weights_hash

    return "0x" + weights_hash(read_weights(path)).hex()


def file_sha256(path: Path) -> str:
    """Return the sha256 of the file's bytes (a download check; not the hash the chain holds)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(path: Path, task: str, *, expected_hash: str | None = None) -> nn.Module:
    """Build task ``task``'s model and load the weights stored in ``path`` into it, in eval mode.

    Parameters:
        path: a model file written by the coordinator (``final.npz``, ``round-<r>.npz``).
        task: the study's task code, e.g. ``"ct-sinogram-lesion-v1"`` (the model card names it).
        expected_hash: when given (``0x`` + 64 hex digits, as the card and the chain show it),
            the weights must hash to it.

    Returns:
        The model; it maps a float32 batch ``(n, *task.input_shape)`` to ``n`` logits, a
        positive logit meaning "lesion present".

    Raises:
        tasks.UnknownTaskError: no such task.
        tasks.WeightsError: the file is unreadable or its arrays do not fit the task's model.
        ModelCardError: the weights do not hash to ``expected_hash``.
    """
    from tasks import get_task, set_weights, weights_hash

    weights = read_weights(path)
    if expected_hash is not None:
        actual = "0x" + weights_hash(weights).hex()
        if actual.lower() != expected_hash.lower():
            raise ModelCardError(f"{path}: weights hash to {actual}, expected {expected_hash}; the file is not the "
                                 "model the card and the chain name: download it again")
    model = get_task(task).build_model()
    set_weights(model, weights)
    model.eval()
    return model


def main(argv: list[str] | None = None) -> int:
    """Print the on-chain hash and the file sha256 of each model file named on the command line."""
    from tasks import WeightsError

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m coordinator.model_loader MODEL.npz [...]", file=sys.stderr)
        return 2
    status = 0
    for name in paths:
        try:
            print(f"{name}: weights_hash {model_hash(Path(name))} (on chain); file sha256 {file_sha256(Path(name))}")
        except (WeightsError, OSError) as exc:
            print(f"{name}: {exc}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
