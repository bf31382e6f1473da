"""The cohort a node kept for each round it trained, so patients can later be given inclusion proofs.

One file per round, ``<node>/cohorts/study-<id>/round-<r>.json``, format ``metai-kept-cohort``
version 2::

    {"format": "metai-kept-cohort", "version": 2, "study_id": 3, "round": 1, "block": 120,
     "root": "0x...", "count": 40, "dataset_ids": [1, 2],
     "members": [{"record_id": "...", "kind": 4, "patient": "0x...", "dataset_id": 1}, ...]}

``root``, ``count``, ``block`` and ``dataset_ids`` are what the node anchored on chain
(``contribute``); ``block`` is the block the cohort was built at, so the cohort can be rebuilt
and checked against the root, and each member's ``dataset_id`` names the registered dataset
that holds it, so the round's cohort manifest (:mod:`node.lineage`) can be made again. Members
carry no path, label or local identifier: only what a proof needs.

Version 1 (before contributions named datasets) is still read: its members' ``dataset_id`` is
None and its ``dataset_ids`` empty. Nothing rewrites it, so it stays what that version kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from node.cohort import Cohort
from node.errors import NodeError

FORMAT = "metai-kept-cohort"
VERSION = 2
#: Versions :meth:`KeptCohort.from_json` reads.
READABLE = (1, 2)
COHORTS_DIR = "cohorts"


class KeptCohortError(NodeError, ValueError):
    """A kept cohort file is missing, malformed or of another format or version."""


@dataclass(frozen=True)
class KeptMember:
    """One record of a kept cohort."""

    record_id: str
    kind: int
    #: The patient's address.
    patient: str
    #: The chain id of the registered dataset holding the record (None: kept by version 1, or written
    #: again from what version 1 kept).
    dataset_id: int | None = None


@dataclass(frozen=True)
class KeptCohort:
    """A round's cohort as the node kept it."""

    study_id: int
    round: int
    block: int
    #: ``0x``-prefixed hex of the Merkle root anchored on chain.
    root: str
    count: int
    members: tuple[KeptMember, ...]
    #: The chain ids of the datasets the contribution named, ascending (empty: kept by version 1).
    dataset_ids: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        """The file's content."""
        return {"format": FORMAT, "version": VERSION, "study_id": self.study_id, "round": self.round,
                "block": self.block, "root": self.root, "count": self.count, "dataset_ids": list(self.dataset_ids),
                "members": [{"record_id": m.record_id, "kind": m.kind, "patient": m.patient,
                             "dataset_id": m.dataset_id} for m in self.members]}

    @classmethod
    def from_json(cls, data: object) -> KeptCohort:
        """The kept cohort in ``data``.

        Raises:
            KeptCohortError: another format or version, or a field missing or of another type.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") not in READABLE:
            found = (data.get("format"), data.get("version")) if isinstance(data, dict) else type(data).__name__
            raise KeptCohortError(f"is {found}, expected format {FORMAT!r} version {' or '.join(map(str, READABLE))}")
        first = data["version"] == 1
        try:
            members = tuple(KeptMember(str(m["record_id"]), int(m["kind"]), str(m["patient"]),
                                       None if first or m["dataset_id"] is None else int(m["dataset_id"]))
                            for m in data["members"])
            return cls(int(data["study_id"]), int(data["round"]), int(data["block"]), str(data["root"]),
                       int(data["count"]), members, () if first else tuple(int(d) for d in data["dataset_ids"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise KeptCohortError(f"is malformed ({exc!r})") from None


def kept_cohort_path(node_dir: Path, study_id: int, round_: int) -> Path:
    """Where the cohort of ``round_`` of ``study_id`` is kept."""
    return node_dir / COHORTS_DIR / f"study-{study_id}" / f"round-{round_}.json"


def keep_cohort(node_dir: Path, cohort: Cohort, round_: int) -> KeptCohort:
    """Write the round's cohort atomically (a reader never sees half a file); return what was written."""
    kept = KeptCohort(cohort.study_id, round_, cohort.block, "0x" + cohort.root.hex(), cohort.count,
                      tuple(KeptMember(m.record_id, m.kind, m.patient, m.dataset_id) for m in cohort.members),
                      cohort.dataset_ids)
    path = kept_cohort_path(node_dir, cohort.study_id, round_)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(kept.to_json(), indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return kept


def read_kept_cohort(node_dir: Path, study_id: int, round_: int) -> KeptCohort:
    """The cohort the node kept for ``round_`` of ``study_id``.

    Raises:
        KeptCohortError: there is none, or the file is not a kept cohort of a version read here.
    """
    path = kept_cohort_path(node_dir, study_id, round_)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeptCohortError(f"{path}: no cohort was kept for round {round_} of study {study_id}") from None
    except json.JSONDecodeError as exc:
        raise KeptCohortError(f"{path}: is not JSON ({exc})") from None
    try:
        return KeptCohort.from_json(data)
    except KeptCohortError as exc:
        raise KeptCohortError(f"{path}: {exc}") from None
