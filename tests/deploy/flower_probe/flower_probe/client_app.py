"""ClientApp: one train handler that reports what the node saw, and which process handled it."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_probe.task import local_target, train, write_json

app = ClientApp()
# Counts the messages this process handled since it imported the app: the tests tell a process
# that handles every message (node/federated/worker.py) from one started per message.
_IN_PROCESS = itertools.count(1)


@app.train()
def handle_train(msg: Message, context: Context) -> Message:
    """Pull the received vector toward this node's target and reply with it."""
    in_process = next(_IN_PROCESS)
    # context.state is the run's own (Flower keeps it per run on the SuperNode): a count of this run's messages
    earlier = context.state.config_records.get("probe")
    in_run = (int(earlier["messages"]) if earlier is not None else 0) + 1
    context.state.config_records["probe"] = ConfigRecord({"messages": in_run})
    time.sleep(float(context.run_config["handler-seconds"]))
    vector = msg.content.array_records["arrays"]["vector"].numpy()
    node_value = float(context.node_config.get("node-value", 1.0))  # a node started by deploy.federation has none
    new_vector = train(vector, local_target(node_value, vector.shape[0]), float(context.run_config["lr"]))
    # A node started by deploy.federation has only node-dir (and passphrase-file): report there.
    # A simulated one has only partition-id and num-partitions: report where the run config says.
    node_config = context.node_config
    report_dir = str(node_config.get("report-dir", node_config.get("node-dir", context.run_config["report-dir"])))
    if report_dir:
        name = str(node_config.get("node-name", f"probe{node_config.get('partition-id', '')}"))
        write_json(
            Path(report_dir) / f"{name}-round{msg.metadata.group_id}.json",
            {
                "node_config": dict(context.node_config),
                "run_config": dict(context.run_config),
                "node_id": context.node_id,
                "run_id": context.run_id,
                "round": msg.metadata.group_id,
                # Where the code runs from: the installed FAB, in the SuperNode's interpreter
                "app_file": __file__,
                "sys_prefix": sys.prefix,
                # The thread cap deploy gives a node's ClientApps (deploy/threads.py).
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "pid": os.getpid(),
                "messages_in_process": in_process,
                "messages_in_run": in_run,
            },
        )
    content = RecordDict(
        {
            "arrays": ArrayRecord({"vector": Array(new_vector)}),
            "metrics": MetricRecord({"num-examples": 1, "node-value": node_value}),
        }
    )
    return Message(content=content, reply_to=msg)
