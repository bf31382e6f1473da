"""The Flower ClientApp of a hospital node: handlers only (the work is in node/training.py).

The node's directory comes from the SuperNode's node config (``node-dir``), its passphrase
from the file named by ``passphrase-file`` there (or ``METAI_NODE_PASSPHRASE`` in the
SuperNode's environment), its chain URL from the node directory (or ``METAI_NODE_RPC_URL``).
The coordinator's message names only the study, round, task and hyper-parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from node.config import NodeSettings
from node.node import Node
from node.training import train_round

app = ClientApp()
N = TypeVar("N", int, float)


def _number(value: object, kind: type[N]) -> N:
    """A numeric config value, or a TypeError naming what came instead."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return kind(value)
    raise TypeError(f"expected a number in the round's config, got {value!r}")


@app.train()
def handle_train(msg: Message, context: Context) -> Message:
    """Train one round of the study on this node's consenting records and anchor it."""
    settings = NodeSettings()
    node_dir = Path(str(context.node_config.get("node-dir", settings.dir)))
    passphrase_file = str(context.node_config.get("passphrase-file", ""))
    if passphrase_file:
        passphrase = Path(passphrase_file).read_text(encoding="utf-8").strip()
    else:
        passphrase = settings.require_passphrase()
    node = Node(node_dir, passphrase, rpc_url=settings.rpc_url)
    config = msg.content.config_records["config"]
    arrays = msg.content.array_records["arrays"]
    weights = [arrays[key].numpy() for key in sorted(arrays.keys(), key=int)]
    result = train_round(
        node,
        study_id=_number(config["study-id"], int),
        round_=_number(config["round"], int),
        task_code=str(config["task"]),
        weights=weights,
        epochs=_number(config["local-epochs"], int),
        lr=_number(config["lr"], float),
        batch_size=_number(config["batch-size"], int),
        proximal_mu=_number(config["proximal-mu"], float),
    )
    content = RecordDict(
        {
            "arrays": ArrayRecord({str(i): Array(w) for i, w in enumerate(result.weights)}),
            "metrics": MetricRecord({**result.metrics, "cohort-count": result.cohort.count}),
            "commitment": ConfigRecord(
                {
                    "hospital": node.address,
                    "cohort-root": "0x" + result.cohort.root.hex(),
                    "update-hash": "0x" + result.update_hash.hex(),
                    "tx": result.tx_hash,
                }
            ),
        }
    )
    return Message(content=content, reply_to=msg)
