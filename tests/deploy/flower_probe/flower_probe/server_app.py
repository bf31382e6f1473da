"""ServerApp: wait for the nodes, run the rounds, average the replies, write a summary."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.serverapp import Grid, ServerApp

from flower_probe.task import average, initial_vector, scalar, write_json

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-rounds`` rounds of train + average on every connected node."""
    cfg = context.run_config
    node_ids = _wait_for_nodes(grid, int(cfg["min-nodes"]), float(cfg["wait-nodes"]))
    vector = initial_vector(int(cfg["dim"]))
    rounds: list[dict[str, object]] = []
    for server_round in range(1, int(cfg["num-rounds"]) + 1):
        started = time.monotonic()
        messages = [
            Message(
                content=RecordDict(
                    {"arrays": ArrayRecord({"vector": Array(vector)}), "config": ConfigRecord({"round": server_round})}
                ),
                dst_node_id=node_id,
                message_type=MessageType.TRAIN,
                group_id=str(server_round),
            )
            for node_id in node_ids
        ]
        replies = _send_and_receive(grid, messages, float(cfg["poll-interval"]), float(cfg["round-timeout"]))
        errors = [str(r.error.reason) for r in replies if r.has_error()]
        if errors or len(replies) != len(node_ids):
            raise RuntimeError(f"round {server_round}: {len(replies)}/{len(node_ids)} replies, errors {errors}")
        vectors = [r.content.array_records["arrays"]["vector"].numpy() for r in replies]
        weights = [scalar(r.content.metric_records["metrics"]["num-examples"]) for r in replies]
        vector = average(vectors, weights)
        rounds.append(
            {
                "round": server_round,
                "seconds": time.monotonic() - started,
                "nodes": sorted(r.metadata.src_node_id for r in replies),
                "node_values": sorted(scalar(r.content.metric_records["metrics"]["node-value"]) for r in replies),
            }
        )
        print(f"probe round {server_round}: vector={vector.tolist()} from {len(replies)} nodes", flush=True)
    if result_file := str(cfg["result-file"]):
        write_json(
            Path(result_file),
            {
                "run_id": context.run_id,
                "run_config": dict(cfg),
                "vector": vector.tolist(),
                "rounds": rounds,
                "env": {key: os.environ.get(key) for key in str(cfg["env-keys"]).split(",") if key},
            },
        )


def _wait_for_nodes(grid: Grid, count: int, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(node_ids := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(node_ids)} of {count} SuperNodes connected within {timeout} s")
        time.sleep(0.2)
    return node_ids


def _send_and_receive(grid: Grid, messages: list[Message], poll: float, timeout: float) -> list[Message]:
    # Grid.send_and_receive polls every 3 s; a shorter poll takes seconds off each round.
    if poll <= 0:
        return list(grid.send_and_receive(messages, timeout=timeout))
    pending = set(grid.push_messages(messages))
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        got: Iterable[Message] = grid.pull_messages(pending)
        for reply in got:
            replies.append(reply)
            pending.discard(reply.metadata.reply_to_message_id)
        if pending:
            time.sleep(poll)
    return replies
