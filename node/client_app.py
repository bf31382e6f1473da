"""The Flower ClientApp of a hospital node: handlers and mods only (the work is in node/training.py).

A training message passes through two mods before the handler, and its reply back through
them in reverse order:

1. ``anchoring_mod`` (outermost) anchors the update the node actually sends: it hashes the
   reply's weights, submits ``contribute(study, round, cohortRoot, cohortCount, cohortBlock,
   datasetIds, updateHash)`` with the hospital's key, keeps the cohort for inclusion proofs and
   the round's cohort manifest (node/lineage.py), and puts the manifest into the reply's
   commitment, or only its SHA-256 when the node seals its proofs (``METAI_NODE_PROOF_MODE=sealed``:
   the coordinator must not learn which addresses took part; an auditor gets the manifest from
   the hospital, ``metai-node cohort-manifest``).
2. ``dp_clipping_mod`` applies Flower's ``fixedclipping_mod`` when the round asks for clipped
   updates (differential privacy): the update is clipped before it is hashed and anchored.
3. ``handle_train`` checks the study, builds the cohort at the current block and trains.

The mods and the handler are built by :func:`make_app` around one :class:`NodeRuntime`, the
process's own state (the node it opened, the cohort each training message trained on until
its reply is anchored); ``app`` is that, for Flower to load. In a SuperNode's resident worker
(node/federated/worker.py) the process, and so the opened node, lives across messages and
runs; a message's cohort never outlives its message.

The node's directory comes from the SuperNode's node config (``node-dir``), its passphrase
from the file named by ``passphrase-file`` there (or ``METAI_NODE_PASSPHRASE`` in the
SuperNode's environment), its chain URL from the node config's ``rpc-url`` (``metai-node serve``
puts ``METAI_NODE_RPC_URL`` there), else ``METAI_NODE_RPC_URL``, else the node directory.
With ``signer-socket`` in the node config, contributions are signed by the node's signing
agent (node/signer.py) instead of unlocking the key in every round's process. ``anchor =
false`` in the node config turns the chain writes off (benchmarks only). On the
simulation engine, whose node config holds only ``partition-id``, the same keys come from
entry ``partition-id`` of the JSON list in ``METAI_SIMULATION_NODES``. The coordinator's
message names only the study, round, task and hyper-parameters.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable

from node.cohort import Cohort
from node.config import NodeSettings
from node.errors import NodeError
from node.kept_reply import KeptReply, keep_reply, kept_reply_path, read_kept_reply
from node.node import Node
from node.node_config import SIMULATION_NODES_ENV, NodeConfigKey
from node.signer import RemoteSigner
from node.training import anchor_contribution, train_local
from tasks.protocol import (
    ARRAYS,
    CLIPPING_NORM,
    COHORT_COUNT,
    COMMITMENT,
    CONFIG,
    METRICS,
    Commitment,
    TrainInstruction,
    pack_weights,
    timing_metrics,
    unpack_weights,
)

_log = logging.getLogger(__name__)


class NodeConfigError(NodeError, ValueError):
    """The SuperNode's node config does not say which node this is."""


def node_settings(context: Context) -> dict[str, str]:
    """This node's own settings: the SuperNode's node config, or its simulation entry."""
    config = {k: str(v) for k, v in context.node_config.items()}
    if NodeConfigKey.NODE_DIR not in config and NodeConfigKey.PARTITION_ID in config:
        listed = os.environ.get(SIMULATION_NODES_ENV)
        if not listed:
            raise NodeConfigError(
                f"simulation partition {config[NodeConfigKey.PARTITION_ID]}: {SIMULATION_NODES_ENV} is not set")
        entries = json.loads(listed)
        index = int(config[NodeConfigKey.PARTITION_ID])
        if not 0 <= index < len(entries):
            raise NodeConfigError(f"simulation partition {index}: {SIMULATION_NODES_ENV} lists {len(entries)} nodes")
        config.update({str(k): str(v) for k, v in entries[index].items()})
    return config


def read_passphrase(context: Context) -> str:
    """The node's passphrase: from the node config's ``passphrase-file``, else the environment."""
    passphrase_file = node_settings(context).get(NodeConfigKey.PASSPHRASE_FILE, "")
    if passphrase_file:
        return Path(passphrase_file).read_text(encoding="utf-8").strip()
    return NodeSettings().require_passphrase()


def rpc_url(context: Context) -> str | None:
    """The chain URL: the node config's ``rpc-url``, else ``METAI_NODE_RPC_URL``; None: ``node.json``'s."""
    return node_settings(context).get(NodeConfigKey.RPC_URL) or NodeSettings().rpc_url


class NodeRuntime:
    """What one ClientApp process keeps between the steps of handling a message.

    - the node it serves, opened once per node directory (a later message of the same
      process reuses it);
    - the cohort each training message trained on, from the handler to the anchoring mod,
      for as long as that message is being handled (see :meth:`handling`).
    """

    def __init__(self) -> None:
        self._nodes: dict[Path, Node] = {}
        self._cohorts: dict[str, Cohort] = {}

    def node(self, context: Context) -> Node:
        """The node this SuperNode serves."""
        node_dir = Path(node_settings(context).get(NodeConfigKey.NODE_DIR, str(NodeSettings().dir))).resolve()
        if node_dir not in self._nodes:
            self._nodes[node_dir] = Node(node_dir, read_passphrase(context), rpc_url=rpc_url(context))
        return self._nodes[node_dir]

    @contextmanager
    def handling(self, msg: Message) -> Iterator[None]:
        """While ``msg`` is handled: whatever the handler records for it is dropped afterwards, also on failure."""
        try:
            yield
        finally:
            self._cohorts.pop(msg.metadata.message_id, None)

    def trained_on(self, msg: Message, cohort: Cohort) -> None:
        """Record the cohort the handler trained on for ``msg``."""
        self._cohorts[msg.metadata.message_id] = cohort

    def cohort_of(self, msg: Message) -> Cohort:
        """The cohort recorded for ``msg``.

        Raises:
            NodeError: none is (the anchoring mod must wrap the training handler).
        """
        try:
            return self._cohorts[msg.metadata.message_id]
        except KeyError:
            raise NodeError(f"no cohort was recorded for training message {msg.metadata.message_id}: "
                            "the anchoring mod must wrap the training handler") from None

    @property
    def pending(self) -> int:
        """Messages whose cohort is recorded and not yet dropped."""
        return len(self._cohorts)


def anchoring_enabled(context: Context) -> bool:
    """Whether this node anchors its contributions (node config ``anchor``; default true)."""
    value = node_settings(context).get(NodeConfigKey.ANCHOR, "true").strip().lower()
    if value not in {"true", "false"}:
        raise NodeConfigError(f"node config anchor = {value!r}; expected true or false")
    return value == "true"


class _Again:
    """A kept reply, to send again for a repeated request."""

    def __init__(self, kept: KeptReply) -> None:
        self.kept = kept

    def reply_to(self, msg: Message) -> Message:
        content = RecordDict({ARRAYS: ArrayRecord(pack_weights(self.kept.weights)),
                              METRICS: MetricRecord(self.kept.metrics),
                              COMMITMENT: ConfigRecord(self.kept.commitment)})
        return Message(content=content, reply_to=msg)


def _anchored_before(node: Node, instruction: TrainInstruction, received: str) -> _Again | None:
    """The reply to send again if this node already anchored this round from these weights; None: train.

    Raises:
        NodeError: the chain holds this node's contribution to the round but the node kept no
            matching reply (lost, damaged, or trained from other global weights): nothing can be sent.
    """
    study_id, round_ = instruction.study_id, instruction.round
    on_chain = node.exchange.studies.contribution_of(study_id, round_, node.address)
    if on_chain is None:
        return None  # the usual case: train (and replace whatever reply an earlier round kept)
    anchored = "0x" + on_chain.update_hash.hex()
    where = f"round {round_} of study {study_id}"
    kept = read_kept_reply(node.dir, study_id)
    if kept is None or kept.round != round_ or kept.commitment.get("update-hash") != anchored:
        raise NodeError(f"{where}: the chain already holds this node's update {anchored}, and "
                        f"{kept_reply_path(node.dir, study_id)} does not keep it, so it cannot be sent again; the "
                        "chain takes one contribution per hospital and round")
    if kept.received != received:
        raise NodeError(f"{where}: this node already anchored its update, trained from global weights {kept.received}; "
                        f"the coordinator now sends {received}, and the chain takes one contribution per round")
    _log.info("%s: already anchored (tx %s); sending the kept reply again", where, kept.commitment.get("tx"))
    return _Again(kept)


def dp_clipping_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Clip the update with Flower's ``fixedclipping_mod`` when the round asks for it."""
    if msg.metadata.message_type == MessageType.TRAIN and CLIPPING_NORM in msg.content.config_records[CONFIG]:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


def make_app(runtime: NodeRuntime) -> ClientApp:
    """The node's ClientApp, its mods and handler sharing ``runtime``."""

    def anchoring_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        """Anchor the update in the reply (after any clipping) with the cohort it was trained on.

        A round this node already anchored, asked again from the same global weights (the
        coordinator restarted while it was in flight), gets the reply it was sent, from
        :mod:`node.kept_reply`, instead of a second training the chain would refuse.
        """
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        from tasks import weights_hash

        instruction = TrainInstruction.from_config(msg.content.config_records[CONFIG])
        node = runtime.node(context)
        anchor = anchoring_enabled(context)
        layout = instruction.weight_layout
        received = "0x" + weights_hash(unpack_weights(msg.content.array_records[ARRAYS].to_numpy_ndarrays(),
                                                      layout)).hex()
        if anchor and (again := _anchored_before(node, instruction, received)) is not None:
            return again.reply_to(msg)
        with runtime.handling(msg):
            reply = call_next(msg, context)
            if reply.has_error():
                return reply
            cohort = runtime.cohort_of(msg)
            weights = unpack_weights(reply.content.array_records[ARRAYS].to_numpy_ndarrays(), layout)
            socket = node_settings(context).get(NodeConfigKey.SIGNER_SOCKET)
            signer = RemoteSigner(Path(socket)) if socket else None
            anchored = anchor_contribution(node, cohort, instruction.round, weights, anchor=anchor, signer=signer)
        commitment = Commitment.from_config(reply.content.config_records[COMMITMENT])
        reply.content.config_records[COMMITMENT] = ConfigRecord(
            commitment.anchored(anchored.update_hash, anchored.tx_hash, anchored.manifest,
                                sealed=NodeSettings().proof_mode == "sealed").to_config())
        reply.content.metric_records[METRICS].update(timing_metrics({"anchor": anchored.seconds}))
        if anchor:
            keep_reply(node.dir, KeptReply(instruction.study_id, instruction.round, received, weights,
                                           dict(reply.content.metric_records[METRICS]),
                                           dict(reply.content.config_records[COMMITMENT])))
        return reply

    client_app = ClientApp(mods=[anchoring_mod, dp_clipping_mod])

    @client_app.train()
    def handle_train(msg: Message, context: Context) -> Message:
        """Train one round of the study on this node's consenting records."""
        started = time.perf_counter()
        # From the ServerApp making the message to this handler starting: the way in, through the
        # SuperLink, this SuperNode's poll and the worker's wake-up (one host's clock in a
        # deployment on one machine; across hosts it holds their clocks' difference too).
        dispatch = max(0.0, time.time() - msg.metadata.created_at)
        node = runtime.node(context)
        instruction = TrainInstruction.from_config(msg.content.config_records[CONFIG])
        result = train_local(
            node,
            study_id=instruction.study_id,
            round_=instruction.round,
            task_code=instruction.task,
            weights=unpack_weights(msg.content.array_records[ARRAYS].to_numpy_ndarrays(), instruction.weight_layout),
            epochs=instruction.local_epochs,
            lr=instruction.lr,
            batch_size=instruction.batch_size,
            proximal_mu=instruction.proximal_mu,
            clipping_norm=instruction.clipping_norm,
        )
        runtime.trained_on(msg, result.cohort)
        seconds = timing_metrics({**result.seconds, "node": time.perf_counter() - started, "dispatch": dispatch})
        commitment = Commitment(
            hospital=node.address,
            cohort_root="0x" + result.cohort.root.hex(),
            cohort_count=result.cohort.count,
            # The model card reports the share of simulated records; only the node knows it.
            synthetic_count=sum(m.synthetic for m in result.cohort.members),
        )
        content = RecordDict(
            {
                ARRAYS: ArrayRecord(pack_weights(result.weights)),
                METRICS: MetricRecord({**result.metrics, **seconds, COHORT_COUNT: result.cohort.count}),
                COMMITMENT: ConfigRecord(commitment.to_config()),
            }
        )
        return Message(content=content, reply_to=msg)

    return client_app


#: The ClientApp Flower loads (``node.client_app:app``), with this process's runtime.
app = make_app(NodeRuntime())
