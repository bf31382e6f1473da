"""Training helpers shared by the tasks: weights in and out, local training, evaluation.

Weights travel as a list of numpy arrays in the order of the model's ``state_dict`` (the
Flower convention). :func:`weights_hash` gives the 32-byte digest the chain anchors for an
update or a model, and :func:`save_weights` / :func:`load_weights` store them as ``.npz``.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from eth_utils.crypto import keccak
from torch import nn

from raw_data._files import atomic_target as atomic_path
from tasks.errors import TaskDataError, TrainingError, WeightsError

__all__ = [
    "TrainConfig",
    "content_order",
    "evaluate",
    "get_weights",
    "load_weights",
    "save_weights",
    "set_weights",
    "train",
    "weights_hash",
]

Weights = list[npt.NDArray[np.generic]]
_HASH_DOMAIN = b"metai-weights/1\n"
_EVAL_BATCH = 64
_KEY = "w{:04d}"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one round of local training.

    Attributes:
        epochs: passes over the local examples.
        batch_size: examples per optimiser step.
        lr: Adam learning rate.
        proximal_mu: FedProx weight; 0 is plain FedAvg local training.
        seed: seed of the order examples are visited in.
    """

    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    proximal_mu: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError(f"epochs {self.epochs} and batch_size {self.batch_size} must be >= 1")
        if not (self.lr > 0 and np.isfinite(self.lr)):
            raise TrainingError(f"lr is {self.lr}, expected a positive number")
        if not (self.proximal_mu >= 0 and np.isfinite(self.proximal_mu)):
            raise TrainingError(f"proximal_mu is {self.proximal_mu}, expected a number >= 0")


def get_weights(model: nn.Module) -> Weights:
    """Return copies of the model's state as numpy arrays, in ``state_dict`` order."""
    return [t.detach().cpu().numpy().copy() for t in model.state_dict().values()]


def _check_weights(model: nn.Module, weights: Weights) -> dict[str, torch.Tensor]:
    state = model.state_dict()
    if len(weights) != len(state):
        raise WeightsError(
            f"got {len(weights)} weight arrays, but the model has {len(state)}; the weights belong to another model"
        )
    out = {}
    for (name, current), array in zip(state.items(), weights, strict=True):
        value = np.asarray(array)
        if tuple(value.shape) != tuple(current.shape):
            raise WeightsError(f"weight {name!r} has shape {value.shape}, the model expects {tuple(current.shape)}")
        if not np.isfinite(value).all():
            raise WeightsError(f"weight {name!r} holds NaN or infinite values")
        out[name] = torch.as_tensor(value, dtype=current.dtype)
    return out


def set_weights(model: nn.Module, weights: Weights) -> None:
    """Load ``weights`` (as from :func:`get_weights`) into ``model``.

    Raises:
        WeightsError: wrong number of arrays, a wrong shape, or non-finite values; the model
            is left unchanged.
    """
    model.load_state_dict(_check_weights(model, weights), strict=True)


def _check_examples(model_inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if model_inputs.ndim < 2 or model_inputs.shape[0] == 0:
        raise TaskDataError(f"inputs have shape {tuple(model_inputs.shape)}, expected (n >= 1, ...)")
    if labels.shape != (model_inputs.shape[0],):
        raise TaskDataError(f"labels have shape {tuple(labels.shape)}, expected ({model_inputs.shape[0]},)")
    if not bool(((labels == 0) | (labels == 1)).all()):
        raise TaskDataError("labels must be 0 (no lesion) or 1 (lesion)")
    return labels.to(torch.float32)


def train(
    model: nn.Module,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    global_weights: Weights | None = None,
) -> dict[str, float]:
    """Train ``model`` in place on local examples with Adam and binary cross-entropy.

    With ``config.proximal_mu > 0`` the FedProx term ``mu / 2 * ||w - w_global||**2`` over
    the trainable parameters is added to every step's loss, which keeps the local model near
    the global one when hospitals' data differ.

    Parameters:
        model: the task's model, its weights already set to the global model.
        inputs: float32 ``(n, *input_shape)``.
        labels: ``(n,)`` of 0 / 1.
        config: hyper-parameters.
        global_weights: the global model (as from :func:`get_weights`); required when
            ``proximal_mu > 0``.

    The examples are visited in an order drawn from ``config.seed`` over an order of their own
    (:func:`content_order`), not the order the caller lists them in: a node lists its cohort by
    record id, a hash of each stored file, which holds the node's own pseudonyms; so the same
    examples, global weights and config give the same update on any node, in any run.

    Returns:
        ``train_loss`` and ``train_accuracy`` over the last epoch (cross-entropy without the
        proximal term, accuracy of the predictions made while training), and ``examples``.

    Raises:
        TaskDataError: inputs and labels do not match or labels are not 0 / 1.
        TrainingError: ``proximal_mu > 0`` without ``global_weights``.
        WeightsError: ``global_weights`` do not fit the model.
    """
    targets = _check_examples(inputs, labels)
    canonical = content_order(inputs, targets)
    inputs, targets = inputs[canonical], targets[canonical]
    anchors: list[tuple[torch.Tensor, torch.Tensor]] = []
    if config.proximal_mu > 0:
        if global_weights is None:
            raise TrainingError("proximal_mu > 0 needs global_weights, the model the round started from")
        reference = _check_weights(model, global_weights)
        anchors = [(p, reference[name]) for name, p in model.named_parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    order = torch.Generator().manual_seed(config.seed)
    # Augmentation draws from the global generator: seeded here, and the caller's state restored.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _epochs(model, inputs, targets, config, optimiser, order, anchors)


def content_order(inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return the permutation that sorts examples by the SHA-256 of their bytes (input, then label).

    It depends on the examples only, never on where they are listed; equal examples keep their
    relative order.

    Parameters:
        inputs: ``(n, ...)``.
        labels: ``(n,)``.
    """
    values = inputs.detach().to(torch.float32).contiguous().numpy()
    marks = labels.detach().to(torch.float32).contiguous().numpy()
    digests = [hashlib.sha256(values[i].tobytes() + marks[i].tobytes()).digest() for i in range(values.shape[0])]
    return torch.tensor(sorted(range(len(digests)), key=digests.__getitem__), dtype=torch.long)


def _epochs(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: TrainConfig,
    optimiser: torch.optim.Optimizer,
    order: torch.Generator,
    anchors: list[tuple[torch.Tensor, torch.Tensor]],
) -> dict[str, float]:
    n = inputs.shape[0]
    model.train()
    loss_sum, correct = 0.0, 0
    for _ in range(config.epochs):
        loss_sum, correct = 0.0, 0
        permutation = torch.randperm(n, generator=order)
        for start in range(0, n, config.batch_size):
            batch = permutation[start : start + config.batch_size]
            logits = model(inputs[batch])
            loss = nn.functional.binary_cross_entropy_with_logits(logits, targets[batch])
            objective = loss
            if anchors:
                proximal = torch.stack([((p - g) ** 2).sum() for p, g in anchors]).sum()
                objective = loss + config.proximal_mu / 2 * proximal
            optimiser.zero_grad()
            objective.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            loss_sum += loss.item() * len(batch)
            correct += int(((logits.detach() > 0).float() == targets[batch]).sum())
    model.eval()
    return {"train_loss": loss_sum / n, "train_accuracy": correct / n, "examples": n}


def evaluate(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Return ``loss`` (binary cross-entropy), ``accuracy`` and ``examples`` of ``model``.

    Raises:
        TaskDataError: inputs and labels do not match or labels are not 0 / 1.
    """
    targets = _check_examples(inputs, labels)
    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, inputs.shape[0], _EVAL_BATCH):
            logits = model(inputs[start : start + _EVAL_BATCH])
            batch = targets[start : start + _EVAL_BATCH]
            loss_sum += nn.functional.binary_cross_entropy_with_logits(logits, batch, reduction="sum").item()
            correct += int(((logits > 0).float() == batch).sum())
    n = inputs.shape[0]
    return {"loss": loss_sum / n, "accuracy": correct / n, "examples": n}


def weights_hash(weights: Weights) -> bytes:
    """Return the keccak256 digest (Ethereum's, not NIST SHA3-256) of the weights, 32 bytes.

    The digest covers a canonical serialisation, so the same values give the same hash on
    every machine::

        b"metai-weights/1\\n"
        count                               uint64 little endian
        for each array, in order:
            len(dtype) + dtype              uint64 LE + ASCII numpy dtype string, little-endian form ("<f4")
            ndim, then each dimension       uint64 LE each
            data                            the values, C order, little-endian bytes

    Raises:
        WeightsError: an array of object or structured dtype.
    """
    parts = [_HASH_DOMAIN, struct.pack("<Q", len(weights))]
    for i, array in enumerate(weights):
        value = np.asarray(array)
        if value.dtype.hasobject or value.dtype.names is not None:
            raise WeightsError(f"weight {i} has dtype {value.dtype}; only plain numeric arrays can be hashed")
        little = value.dtype.newbyteorder("<")
        dtype = little.str.encode("ascii")
        parts += [struct.pack("<Q", len(dtype)), dtype, struct.pack("<Q", value.ndim)]
        parts += [struct.pack("<Q", d) for d in value.shape]
        parts.append(np.ascontiguousarray(value, dtype=little).tobytes())
    return bytes(keccak(b"".join(parts)))


def save_weights(path: str | os.PathLike[str], weights: Weights) -> None:
    """Write weights to an uncompressed ``.npz`` (arrays ``w0000``, ``w0001``, ...), atomically."""
    arrays = {_KEY.format(i): np.asarray(a) for i, a in enumerate(weights)}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # A file object, not a name: numpy would append ".npz" to a name without it.
        np.savez(fh, **arrays)  # type: ignore[arg-type]


def load_weights(path: str | os.PathLike[str]) -> Weights:
    """Read weights written by :func:`save_weights`, in order.

    Raises:
        WeightsError: missing, not an ``.npz`` of this layout, or holding pickled objects.
    """
    where = Path(path)
    try:
        with np.load(where, allow_pickle=False) as archive:
            names = list(archive.files)
            expected = [_KEY.format(i) for i in range(len(names))]
            if sorted(names) != expected:
                raise WeightsError(
                    f"{where}: holds arrays {sorted(names)[:4]}, expected w0000, w0001, ... as save_weights writes"
                )
            return [archive[name] for name in expected]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a truncated .npz is a bad zip
        if isinstance(exc, WeightsError):
            raise
        raise WeightsError(f"{where}: cannot be read as a weights .npz ({exc})") from exc
