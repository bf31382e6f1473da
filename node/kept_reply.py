"""The last reply a node anchored for each study, so a round asked again gets the same update.

A coordinator that dies while a round is in flight loses the replies it had not yet
aggregated. Its resumed run asks the round again, but the chain already holds this node's
contribution to it and refuses a second one. The node therefore keeps, per study, the reply of
the last round it anchored, and answers a repeated request for that round with it: the same
weights, metrics and commitment, no training, no transaction. The coordinator's usual check
(the reply's update hash against the one on chain) accepts it, since it is the anchored update.

The kept reply is used only when the request is for the same round, starts from the same
global weights (their ``weights_hash``) and the chain holds the same update hash for this
node; otherwise the node trains as usual, or refuses when the chain already holds another
update. One file per study, ``<node>/replies/study-<id>.npz`` (numpy's npz, no pickles): the
update's arrays ``0``, ``1``, ... and ``meta``, the UTF-8 JSON::

    {"format": "metai-kept-reply", "version": 1, "study_id": 3, "round": 2,
     "received": "0x<weights_hash of the global weights the round started from>",
     "metrics": {...}, "commitment": {...}}

Written atomically after the contribution is anchored; each round replaces the study's file,
so a node keeps one model update per study it takes part in.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from node.errors import NodeError
from node.private import make_dir, write_atomic

FORMAT = "metai-kept-reply"
VERSION = 1
REPLIES_DIR = "replies"
_META = "meta"


class KeptReplyError(NodeError, ValueError):
    """A kept reply file is malformed, or of another format or version."""


@dataclass(frozen=True)
class KeptReply:
    """The reply a node sent, and anchored, for a round of a study."""

    study_id: int
    round: int
    #: ``0x``-prefixed ``weights_hash`` of the global weights the round was trained from.
    received: str
    weights: list[np.ndarray]
    #: The reply's metrics record.
    metrics: dict[str, Any]
    #: The reply's commitment record (tasks.protocol.Commitment's wire form), update hash and tx included.
    commitment: dict[str, Any]


def kept_reply_path(node_dir: Path, study_id: int) -> Path:
    """Where the last anchored reply for ``study_id`` is kept."""
    return node_dir / REPLIES_DIR / f"study-{study_id}.npz"


def keep_reply(node_dir: Path, reply: KeptReply) -> Path:
    """Write ``reply`` as its study's kept reply, atomically, replacing the one of an earlier round."""
    meta = {"format": FORMAT, "version": VERSION, "study_id": reply.study_id, "round": reply.round,
            "received": reply.received, "metrics": reply.metrics, "commitment": reply.commitment}
    members: dict[str, Any] = {str(i): w for i, w in enumerate(reply.weights)}
    members[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **members)
    path = kept_reply_path(node_dir, reply.study_id)
    make_dir(path.parent)
    write_atomic(path, buffer.getvalue())
    return path


def read_kept_reply(node_dir: Path, study_id: int) -> KeptReply | None:
    """The reply kept for ``study_id``; None if the node kept none.

    Raises:
        KeptReplyError: the file is not a kept reply of a version read here.
    """
    path = kept_reply_path(node_dir, study_id)
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data[_META]).decode("utf-8"))
            names = sorted((n for n in data.files if n != _META), key=int)
            weights = [data[n] for n in names]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise KeptReplyError(f"{path}: is not a kept reply ({exc}); remove it and the round is trained again, "
                             "unless the chain already holds this node's contribution") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        found = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else type(meta).__name__
        raise KeptReplyError(f"{path}: is {found}, expected format {FORMAT!r} version {VERSION}")
    if names != [str(i) for i in range(len(names))]:
        raise KeptReplyError(f"{path}: its arrays are named {names}, expected 0, 1, ...")
    try:
        return KeptReply(int(meta["study_id"]), int(meta["round"]), str(meta["received"]), weights,
                         dict(meta["metrics"]), dict(meta["commitment"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise KeptReplyError(f"{path}: is malformed ({exc!r})") from None
