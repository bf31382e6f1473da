"""The hospital's Flower SuperNode: its command line, node config and environment, and what its log says.

This is the one place a SuperNode's command line is made: ``metai-node serve`` (node/service.py)
runs it for the hospital, and ``deploy`` runs it for the SuperNodes of a local lab
(deploy/flower/processes.py). The SuperNode serves its Runtime API (where its ClientApps
connect) on 127.0.0.1 only and reaches the SuperLink's Fleet API over TLS, authenticating with
the hospital's P-384 key (``metai-node federation-key``), or, to a loopback SuperLink only, over
plain HTTP. By default it runs through :mod:`node.federated.run_supernode`: one resident
ClientApp worker handles every message and Flower's fixed waits are shortened while the node is
active (``isolation="worker"``); ``isolation="subprocess"`` runs Flower's ``flower-supernode``
as it is, a ``flower-superexec`` child starting one ``flwr-clientapp`` per message.

What the SuperNode's log says that serve acts on (Flower 1.41, docs/flower.md):

- ``SuperNode ID: <id>``: the SuperLink activated it (:data:`NODE_ID`);
- ``Failed to activate SuperNode`` (Flower error 2004) before it exits: the SuperLink refused
  its key, either because the key is not registered (the SuperLink's own log says "No SuperNode
  found with the given public key"; the coordinator operator must register it) or because it
  still counts the node online, from a process of it that was killed without saying goodbye (it
  forgets after two missed heartbeats, 60 s). The SuperNode cannot tell which; :func:`deactivate`
  can, for a node id it was given before (:data:`ACTIVATION_REFUSED`).
"""

from __future__ import annotations

import enum
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from node.errors import NodeConfigError
from node.federated.pacing import Pacing
from node.federated.run_supernode import resident_command
from node.node_config import NodeConfigKey

__all__ = ["ACTIVATION_REFUSED", "ISOLATIONS", "LOOPBACK", "NODE_ID", "Deactivation", "SuperLinkRoute", "deactivate",
           "flower_tool", "supernode_command", "supernode_env", "supernode_node_config", "write_node_config"]

#: How a SuperNode runs its ClientApp: one resident worker (node/federated/run_supernode.py), or
#: Flower's one process per message.
ISOLATIONS = ("worker", "subprocess")

#: The only address the SuperNode's Runtime API binds.
LOOPBACK = "127.0.0.1"
NODE_ID = re.compile(r"SuperNode ID: (\d+)")
ACTIVATION_REFUSED = "Failed to activate SuperNode"


@dataclass(frozen=True)
class SuperLinkRoute:
    """How a SuperNode reaches the SuperLink.

    Parameters:
        address: HOST:PORT of its Fleet API.
        root_certificates: the CA certificate (PEM) its TLS certificate chains to; None: plain HTTP.
        private_key: the SuperNode's authentication key (OpenSSH P-384), TLS only; None: the
            SuperNode registers itself with a throw-away key (a SuperLink without authentication).
    """

    address: str
    root_certificates: Path | None
    private_key: Path | None = None

    def __post_init__(self) -> None:
        if self.private_key is not None and self.root_certificates is None:
            raise ValueError("a SuperNode authenticates with its key over TLS only: give root_certificates too")


def flower_tool(name: str) -> Path:
    """The Flower command ``name`` of this venv (beside its Python).

    Raises:
        NodeConfigError: it is not installed.
    """
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise NodeConfigError(f"{name} not found in {path.parent}: install flwr==1.41.0 in this venv "
                              "(make deps does it)")
    return path


def supernode_command(route: SuperLinkRoute, *, port: int, node_config_file: Path, isolation: str = "worker",
                      pacing: Pacing | None = None) -> list[str]:
    """The SuperNode's command line.

    Parameters:
        route: the SuperLink and how to reach it.
        port: the SuperNode's Runtime API port, on 127.0.0.1.
        node_config_file: the TOML file of its node config (:func:`write_node_config`).
        isolation: ``worker``: ``python -m node.federated.run_supernode``, one resident ClientApp
            worker for every message; ``subprocess``: one ``flwr-clientapp`` process per message.
        pacing: the SuperNode's waits (:class:`node.federated.pacing.Pacing`); None: its defaults
            with ``worker``, Flower's own (``flower-supernode`` as it is) with ``subprocess``.

    Raises:
        NodeConfigError: flwr is not installed in this venv; ``isolation`` is not one of ISOLATIONS.
    """
    if isolation not in ISOLATIONS:
        raise NodeConfigError(f"isolation is {isolation!r}; expected one of {', '.join(ISOLATIONS)}")
    tool = str(flower_tool("flower-supernode"))
    args = ["--superlink", route.address, "--host", LOOPBACK, "--port", str(port)]
    tail = ["--node-config", str(node_config_file)]
    if route.root_certificates is None:
        tail += ["--insecure"]
    else:
        tail += ["--root-certificates", str(route.root_certificates)]
        if route.private_key is not None:
            tail += ["--auth-supernode-private-key", str(route.private_key)]
    if isolation == "subprocess" and pacing is None:
        return [tool, *args, "--isolation", "subprocess", *tail]
    return resident_command([*args, *tail], pacing, clientapp=isolation)


def supernode_node_config(node_dir: Path, *, signer_socket: Path | None = None, passphrase_file: Path | None = None,
                          rpc_url: str | None = None) -> dict[str, str]:
    """What the node's ClientApps see as ``context.node_config`` (:class:`node.node_config.NodeConfigKey`).

    Parameters:
        node_dir: the node directory (made absolute).
        signer_socket: the signing agent's socket; None: each ClientApp unlocks the key itself.
        passphrase_file: a file holding the passphrase; None: ``METAI_NODE_PASSPHRASE`` in the
            SuperNode's environment.
        rpc_url: the chain's URL, overriding the one ``node.json`` records.
    """
    config = {NodeConfigKey.NODE_DIR.value: str(Path(node_dir).resolve())}
    if signer_socket is not None:
        config[NodeConfigKey.SIGNER_SOCKET.value] = str(Path(signer_socket).absolute())
    if passphrase_file is not None:
        config[NodeConfigKey.PASSPHRASE_FILE.value] = str(Path(passphrase_file).resolve())
    if rpc_url is not None:
        config[NodeConfigKey.RPC_URL.value] = rpc_url
    return config


def write_node_config(path: Path, config: Mapping[str, str]) -> Path:
    """Write ``config`` as the TOML file ``flower-supernode --node-config`` reads (a file keeps spaces and quotes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(dict(config)), encoding="utf-8")
    return path


def supernode_env(flwr_home: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The SuperNode's environment: ``base`` plus what every Flower process here runs with (docs/flower.md).

    FLWR_HOME (its installed apps), telemetry and the update check off (otherwise each process
    first posts to flower.ai), runtime dependency installation off, this venv's ``bin`` first on
    PATH (``flower-superexec`` and ``flwr-clientapp`` are started by name), unbuffered Python
    (its log arrives line by line), loopback never through a proxy, and the SuperExec poll
    interval deploy uses (0.5 s) unless ``base`` sets one. The same values as
    :func:`coordinator.federated.superlink.flwr_env`, which node may not import; a test
    compares the two.
    """
    env = dict(base)
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), LOOPBACK, "localhost") if p)
    env.update(
        FLWR_HOME=str(flwr_home.resolve()),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
    )
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.5")
    return env


class Deactivation(enum.Enum):
    """How the SuperLink answered :func:`deactivate`."""

    #: It took the node offline.
    DONE = "done"
    #: It knows the key under this node id but refused (the node is offline already).
    REFUSED = "refused"
    #: It does not know the key under this node id: the key is not (or no longer) registered.
    UNKNOWN_KEY = "unknown key"
    #: It could not be reached.
    UNREACHABLE = "unreachable"


def deactivate(route: SuperLinkRoute, node_id: int, timeout: float = 5.0) -> tuple[Deactivation, str]:
    """Tell the SuperLink that SuperNode ``node_id`` (ours, killed without deactivating) is offline.

    A SuperNode stopped with SIGTERM deactivates itself; one killed outright stays online on
    the SuperLink for two heartbeats (60 s), during which a new process with the same key is
    refused. The request is signed with the node's own key through Flower's own Fleet client;
    the SuperLink accepts it only from the key registered under ``node_id``, so its answer also
    tells whether the key is still registered.

    Returns:
        How it answered, and its words.
    """
    if route.private_key is None or route.root_certificates is None:
        return Deactivation.REFUSED, "a self-registered SuperNode is not deactivated by another process"
    import httpx
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_ssh_private_key
    from flwr.proto.fleet_pb2 import DeactivateNodeRequest
    from flwr.supernode.fleet_http_client import FleetHttpClient
    from flwr.supernode.node_auth_http_interceptor import NodeAuthHttpInterceptor

    key = load_ssh_private_key(route.private_key.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return Deactivation.REFUSED, f"{route.private_key} is not an EC key"
    try:
        with FleetHttpClient(f"https://{route.address}", verify=str(route.root_certificates), timeout=timeout,
                             interceptors=[NodeAuthHttpInterceptor(key, key.public_key())]) as client:
            client.DeactivateNode(DeactivateNodeRequest(node_id=node_id))
    except httpx.HTTPStatusError as exc:
        words = f"HTTP {exc.response.status_code}: {exc.response.text[:200]}"
        if exc.response.status_code == httpx.codes.UNAUTHORIZED:
            return Deactivation.UNKNOWN_KEY, words
        return Deactivation.REFUSED, words
    except (httpx.HTTPError, ValueError) as exc:
        return Deactivation.UNREACHABLE, str(exc) or type(exc).__name__
    return Deactivation.DONE, "deactivated"
