"""The messages of a training round between the coordinator and a hospital node, defined once.

A round is one Flower message per node and its reply. The coordinator's ServerApp
(``coordinator.federation``, ``coordinator.rounds``) and the node's ClientApp
(``node.client_app``) build and read them only through the names and records here:

- the instruction (coordinator to node), a ``TRAIN`` message with two records:
  :data:`ARRAYS`, the global model, and :data:`CONFIG`, a :class:`TrainInstruction`, which
  holds the model's layout (the shape of each weight);
- the reply (node to coordinator), with three records: :data:`ARRAYS`, the trained weights;
  :data:`METRICS`, the task's training metrics, the cohort size and the time each step took
  (:func:`timing_metrics`); and :data:`COMMITMENT`, a :class:`Commitment`: what the node
  anchored on chain for this round, which the coordinator checks against the chain.

Weights travel packed (:func:`pack_weights`): Flower's ``ArrayRecord`` of one 1-D float32 array, every
weight flattened in ``state_dict`` order, read back with :func:`unpack_weights` and the layout. Flower
stores and moves each array of a record as objects of their own, one request each between the
SuperLink and the apps; a record of the model's 13 weights made 26 objects a message (and the ServerApp
pushed them one after another while the nodes were already asking for them), the packed record makes 2.
Hashes (``tasks.weights_hash``), files and the chain know only the unpacked list.

The records travel as flat mappings of scalars (Flower's ``ConfigRecord``); this module
needs no Flower. The record formats a node stores are named in :mod:`raw_data.formats` and
re-exported here; the run config's names are the coordinator's own
(``coordinator.run_config.RunConfigName``), since no node reads the run config.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from raw_data.formats import DICOM_FORMAT, ISMRMRD_FORMAT, RECORD_FORMATS, SINOGRAM_FORMAT
from tasks.errors import ProtocolError

__all__ = [
    "ARRAYS",
    "CLIPPING_NORM",
    "COHORT_MANIFEST_FORMAT",
    "COMMITMENT",
    "CONFIG",
    "DICOM_FORMAT",
    "ISMRMRD_FORMAT",
    "METRICS",
    "RECORD_FORMATS",
    "SINOGRAM_FORMAT",
    "Commitment",
    "Scalar",
    "TrainInstruction",
    "layout_of",
    "pack_weights",
    "read_timings",
    "timing_metrics",
    "unpack_weights",
]

ARRAYS = "arrays"
"""Record of the model's weights, in both directions."""
CONFIG = "config"
"""Record of the instruction (:class:`TrainInstruction`)."""
METRICS = "metrics"
"""Record of the reply's metrics (training metrics, ``cohort-count`` and timings)."""
COMMITMENT = "commitment"
"""Record of the reply's :class:`Commitment`."""
CLIPPING_NORM = "clipping_norm"
"""The key Flower's ``fixedclipping_mod`` reads the clipping norm from (Flower's spelling)."""
COHORT_COUNT = "cohort-count"
"""Metric: the records the node trained on."""
COHORT_MANIFEST_FORMAT = "metai-cohort/1"
"""The ``format`` of a cohort manifest, the JSON in :attr:`Commitment.manifest` (docs/formats/lineage-bundle.md)."""
_SECONDS = "-seconds"

#: What a record's value may be (the values of Flower's ``ConfigRecord``).
Scalar = int | float | str | bytes | bool | list[int] | list[float] | list[str] | list[bytes] | list[bool]


def _take(config: Mapping[str, object], key: str, kind: type) -> object:
    """``config[key]`` as ``kind``; raise ProtocolError naming the key if it is missing or of another type."""
    if key not in config:
        raise ProtocolError(f"the record lacks {key!r}")
    value = config[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ProtocolError(f"{key!r} is {value!r}; expected {'a number' if kind in (int, float) else kind.__name__}")
    return value


class _Record:
    """A dataclass carried as a flat mapping; ``_WIRE`` gives each field's key and type on the wire."""

    _WIRE: ClassVar[dict[str, tuple[str, type]]]
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset()

    def to_config(self) -> dict[str, Scalar]:
        """The mapping sent (optional fields left out when None)."""
        values = {name: getattr(self, name) for name in self._WIRE}
        return {self._WIRE[name][0]: value for name, value in values.items() if value is not None}

    @classmethod
    def _read(cls, config: Mapping[str, object]) -> dict[str, object]:
        return {name: _take(config, key, kind) for name, (key, kind) in cls._WIRE.items()
                if name not in cls._OPTIONAL or key in config}


@dataclass(frozen=True)
class TrainInstruction(_Record):
    """What the coordinator asks of a node for one round (record :data:`CONFIG`)."""

    study_id: int
    round: int
    #: The study's task code (``tasks.registry``).
    task: str
    local_epochs: int
    lr: float
    batch_size: int
    #: FedProx's proximal term (0: plain FedAvg).
    proximal_mu: float
    #: The shape of each weight of the model in :data:`ARRAYS`, encoded by :func:`layout_of`.
    weight_layout: list[int]
    #: The L2 norm the update is clipped to (differential privacy); None: no clipping.
    clipping_norm: float | None = None

    _WIRE: ClassVar[dict[str, tuple[str, type]]] = {
        "study_id": ("study-id", int), "round": ("round", int), "task": ("task", str),
        "local_epochs": ("local-epochs", int), "lr": ("lr", float), "batch_size": ("batch-size", int),
        "proximal_mu": ("proximal-mu", float), "weight_layout": ("weight-layout", list),
        "clipping_norm": (CLIPPING_NORM, float),
    }
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"clipping_norm"})

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> TrainInstruction:
        """The instruction in ``config``.

        Raises:
            ProtocolError: a key is missing or holds a value of another type.
        """
        return cls(**cls._read(config))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Commitment(_Record):
    """What a node says it trained on and anchored for a round (record :data:`COMMITMENT`).

    The handler that trains fills the cohort; the mod that anchors adds the update's hash and
    the transaction. Hashes and roots are ``0x``-prefixed hex.
    """

    #: The hospital's address.
    hospital: str
    cohort_root: str
    cohort_count: int
    #: Simulated records in the cohort (the model card reports their share); None: not said.
    synthetic_count: int | None = None
    #: ``weights_hash`` of the weights in the reply; set when anchored.
    update_hash: str | None = None
    #: The anchoring transaction; None when the node does not anchor (benchmarks only).
    tx: str | None = None
    #: The round's cohort manifest, JSON (docs/formats/lineage-bundle.md), for the study's lineage
    #: bundle; set when anchored, unless the node seals its proofs.
    manifest: str | None = None
    #: The SHA-256 (lowercase hex) of the manifest's UTF-8 bytes, sent in its place by a node in sealed
    #: mode: the coordinator then lists the manifest in the bundle by this hash, and the hospital keeps it.
    manifest_sha256: str | None = None

    _WIRE: ClassVar[dict[str, tuple[str, type]]] = {
        "hospital": ("hospital", str), "cohort_root": ("cohort-root", str), "cohort_count": (COHORT_COUNT, int),
        "synthetic_count": ("synthetic-count", int), "update_hash": ("update-hash", str), "tx": ("tx", str),
        "manifest": ("cohort-manifest", str), "manifest_sha256": ("cohort-manifest-sha256", str),
    }
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"synthetic_count", "update_hash", "tx", "manifest",
                                                     "manifest_sha256"})

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> Commitment:
        """The commitment in ``config``.

        Raises:
            ProtocolError: a key is missing or holds a value of another type.
        """
        return cls(**cls._read(config))  # type: ignore[arg-type]

    def anchored(self, update_hash: bytes, tx: str | None, manifest: str | None = None, *,
                 sealed: bool = False) -> Commitment:
        """This commitment with the anchored update's hash, transaction and cohort manifest; ``sealed``: the
        manifest's SHA-256 in its place (the manifest stays on the node)."""
        if sealed and manifest is not None:
            return replace(self, update_hash="0x" + update_hash.hex(), tx=tx,
                           manifest_sha256=hashlib.sha256(manifest.encode("utf-8")).hexdigest())
        return replace(self, update_hash="0x" + update_hash.hex(), tx=tx, manifest=manifest)


Weights = list[npt.NDArray[np.generic]]


def layout_of(weights: Sequence[npt.NDArray[np.generic]]) -> list[int]:
    """The shapes of ``weights`` as one list: for each weight its number of dimensions, then its sizes."""
    encoded: list[int] = []
    for weight in weights:
        encoded += [weight.ndim, *(int(n) for n in weight.shape)]
    return encoded


def _shapes(layout: Sequence[object]) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    at = 0
    while at < len(layout):
        ndim = layout[at]
        if not isinstance(ndim, int) or isinstance(ndim, bool) or ndim < 0 or at + 1 + ndim > len(layout):
            raise ProtocolError(f"'weight-layout' is not a list of shapes (ndim, sizes ...): {list(layout)!r}")
        sizes = layout[at + 1 : at + 1 + ndim]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in sizes):
            raise ProtocolError(f"'weight-layout' holds a size that is not a whole number >= 0: {list(layout)!r}")
        shapes.append(tuple(sizes))  # type: ignore[arg-type]
        at += 1 + ndim
    return shapes


def pack_weights(weights: Sequence[npt.NDArray[np.generic]]) -> list[npt.NDArray[np.float32]]:
    """``weights`` as the one 1-D float32 array record :data:`ARRAYS` carries (``[packed]``).

    Raises:
        ProtocolError: a weight is not float32 (every weight of the task models is).
    """
    if not all(w.dtype == np.float32 for w in weights):
        raise ProtocolError(f"weights of dtype {sorted({str(w.dtype) for w in weights})}; only float32 travels")
    if not weights:
        return [np.zeros(0, dtype=np.float32)]
    return [np.concatenate([np.ascontiguousarray(w).reshape(-1) for w in weights])]


def unpack_weights(arrays: Sequence[npt.NDArray[np.generic]], layout: Sequence[object]) -> Weights:
    """The weights that :func:`pack_weights` packed into ``arrays``, shaped by ``layout`` (from :func:`layout_of`).

    Raises:
        ProtocolError: ``arrays`` is not one 1-D float32 array of exactly the layout's size, or the
            layout is malformed.
    """
    shapes = _shapes(layout)
    if len(arrays) != 1 or arrays[0].ndim != 1 or arrays[0].dtype != np.float32:
        raise ProtocolError(f"the weights record holds {[(a.shape, str(a.dtype)) for a in arrays]}; expected one "
                            "1-D float32 array (tasks.protocol.pack_weights)")
    packed = arrays[0]
    sizes = [int(np.prod(shape, dtype=np.int64)) for shape in shapes]
    if sum(sizes) != packed.size:
        raise ProtocolError(f"the weights record holds {packed.size} numbers; the layout's {len(shapes)} weights "
                            f"take {sum(sizes)}")
    weights: Weights = []
    at = 0
    for shape, size in zip(shapes, sizes, strict=True):
        weights.append(packed[at : at + size].reshape(shape).copy())
        at += size
    return weights


def timing_metrics(seconds: Mapping[str, float]) -> dict[str, float]:
    """The metrics that carry how long each step took (``{"train": 2.0}`` as ``{"train-seconds": 2.0}``)."""
    return {f"{step}{_SECONDS}": float(value) for step, value in seconds.items()}


def read_timings(metrics: Mapping[str, object]) -> dict[str, float]:
    """The step timings among ``metrics`` (the inverse of :func:`timing_metrics`); other metrics are ignored."""
    return {key.removesuffix(_SECONDS): float(value)  # type: ignore[arg-type]
            for key, value in metrics.items() if key.endswith(_SECONDS)}
