"""The keys of the SuperNode's node config, which tell a hospital's ClientApp which node it serves.

``deploy`` writes them (``federation up``, the simulation's ``METAI_SIMULATION_NODES``, the
benchmarks) and :mod:`node.client_app` reads them; both spell them through this module only.
Nothing here comes from the coordinator: a run config cannot point a node at another directory.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["SIMULATION_NODES_ENV", "NodeConfigKey"]

#: On the simulation engine: the JSON list of every virtual node's keys, indexed by ``partition-id``.
SIMULATION_NODES_ENV = "METAI_SIMULATION_NODES"


class NodeConfigKey(StrEnum):
    """A key of the node config (``flower-supernode --node-config``)."""

    #: The node directory (``metai-node init`` made it).
    NODE_DIR = "node-dir"
    #: A file holding the node's passphrase (else ``METAI_NODE_PASSPHRASE``).
    PASSPHRASE_FILE = "passphrase-file"
    #: The Unix socket of the node's signing agent, which signs contributions in place of the key.
    SIGNER_SOCKET = "signer-socket"
    #: The chain's JSON-RPC URL, overriding the one ``node.json`` records (``metai-node serve`` passes
    #: ``METAI_NODE_RPC_URL`` this way).
    RPC_URL = "rpc-url"
    #: ``true`` (default) or ``false``: anchor contributions on chain (false: benchmarks only).
    ANCHOR = "anchor"
    #: Flower's own key on the simulation engine: the virtual node's index.
    PARTITION_ID = "partition-id"
