"""The children ``metai-node serve`` supervises, as data: the signing agent, then the SuperNode.

:func:`children` returns them in start order; a child added here (its command, environment,
what its output means, its health probe) is started, restarted, logged, reported and stopped
like the others (node/supervisor.py).
"""

from __future__ import annotations

import logging
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from node.federated.supernode import (
    ACTIVATION_REFUSED,
    NODE_ID,
    Deactivation,
    SuperLinkRoute,
    deactivate,
    supernode_command,
    supernode_env,
)
from node.supervisor import ChildSpec

__all__ = ["ServePlan", "SuperNodeWatch", "children", "probe_superlink"]

#: Seconds the SuperLink has to accept a connection and finish the TLS handshake.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class ServePlan:
    """Everything serve runs with, resolved and checked (:func:`node.service.plan`)."""

    node_dir: Path  # absolute
    hospital: str  # the hospital's address
    route: SuperLinkRoute
    supernode_port: int
    signer_socket: Path
    node_config_file: Path
    flwr_home: Path
    env: dict[str, str]  # the environment of every child


def children(plan: ServePlan, watch: SuperNodeWatch) -> list[ChildSpec]:
    """The signing agent and the SuperNode of ``plan``, in start order."""
    socket_path = plan.signer_socket
    signer = ChildSpec(
        name="signer",
        command=[sys.executable, "-m", "node.signer", "--node-dir", str(plan.node_dir), "--socket", str(socket_path)],
        env=plan.env,
        ready=lambda line: {} if line == f"ready {socket_path}" else None,
        check=lambda: _signer_answers(socket_path, plan.hospital),
    )
    supernode = ChildSpec(
        name="supernode",
        command=supernode_command(plan.route, port=plan.supernode_port, node_config_file=plan.node_config_file),
        env=supernode_env(plan.flwr_home, plan.env),
        ready=watch.ready,
        start_failed=watch.start_failed,
        before_start=watch.before_start,
        preflight=lambda: probe_superlink(plan.route),
        check=lambda: _superlink_check(plan.route),
    )
    return [signer, supernode]


class SuperNodeWatch:
    """What serve knows of its SuperNode across restarts (and serves): the node id the SuperLink gave it.

    With that id it tells the SuperLink that a SuperNode process killed without deactivating is
    gone (:func:`node.federated.supernode.deactivate`), before it is restarted or when the
    SuperLink refuses a new one, so the new one is admitted at once instead of after two missed
    heartbeats. The SuperLink's answer also tells whether the key is still registered.
    """

    def __init__(self, route: SuperLinkRoute, log: logging.Logger, node_id: int | None = None) -> None:
        self.route = route
        self.log = log
        self.node_id = node_id

    def ready(self, line: str) -> dict[str, Any] | None:
        """``{"node_id": id}`` once the SuperNode logs its activation."""
        if (found := NODE_ID.search(line)) is None:
            return None
        self.node_id = int(found.group(1))
        return {"node_id": self.node_id}

    def start_failed(self, lines: Sequence[str], default: str) -> str | None:
        """Why serve cannot start after the SuperNode's start ended, or None to try again."""
        if not any(ACTIVATION_REFUSED in line for line in lines):
            return default
        refused = f"the SuperLink at {self.route.address} refused to activate this node's SuperNode key " \
                  f"{self.route.private_key}"
        register = "register the public key with the coordinator operator (`metai-node federation-key` prints it)"
        if self.node_id is None:  # never activated: nothing of ours can be online
            return (f"{refused}: it is not registered there; {register}. (If it is, another SuperNode with this "
                    "key is online, or was killed less than a minute ago.)")
        outcome = self.deactivate()
        if outcome is Deactivation.UNKNOWN_KEY:
            return f"{refused}: it is no longer registered there (as node {self.node_id}); {register}"
        return None  # it still counted the node online (told now), or could not be asked: try again

    def before_start(self, lines: Sequence[str] = ()) -> None:
        """Before a restart: tell the SuperLink that the previous process (of a known node id) is gone."""
        if self.node_id is not None:
            self.deactivate()

    def deactivate(self) -> Deactivation | None:
        """Deactivate the known node id on the SuperLink; log and return its answer (None: no id known)."""
        if self.node_id is None or self.route.private_key is None:
            return None
        outcome, words = deactivate(self.route, self.node_id)
        if outcome is Deactivation.DONE:
            self.log.info("told the SuperLink that node %d of the previous SuperNode process is offline", self.node_id)
        elif outcome is Deactivation.UNKNOWN_KEY:
            self.log.error("the SuperLink no longer knows this node's key as node %d (%s): register the public key "
                           "with the coordinator operator (`metai-node federation-key` prints it)", self.node_id, words)
        else:
            self.log.info("node %d was not deactivated (%s: %s); the SuperLink counts it offline already, or will "
                          "after two missed heartbeats", self.node_id, outcome.value, words)
        return outcome


def probe_superlink(route: SuperLinkRoute, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Connect to the SuperLink (and, with TLS, check its certificate against the CA); None if it answers, else why.

    Only the TCP and TLS handshakes: nothing is sent, so the SuperLink sees no request.
    """
    host, _, port = route.address.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw:
            if route.root_certificates is None:
                return None
            context = ssl.create_default_context(cafile=str(route.root_certificates))
            with context.wrap_socket(raw, server_hostname=host):
                return None
    except ssl.SSLCertVerificationError as exc:
        return (f"the SuperLink at {route.address} presents a certificate that the CA in {route.root_certificates} "
                f"does not vouch for ({exc.verify_message}); check METAI_NODE_SUPERLINK_ROOT_CERTIFICATES (the "
                "consortium CA certificate) and METAI_NODE_SUPERLINK_ADDRESS (a name or address in its certificate)")
    except ssl.SSLError as exc:
        return (f"the TLS handshake with the SuperLink at {route.address} failed ({exc.reason or exc}); is "
                "METAI_NODE_SUPERLINK_ADDRESS the SuperLink's TLS port?")
    except TimeoutError:
        return (f"cannot reach the SuperLink at {route.address} (no answer within {timeout:g} s); check "
                "METAI_NODE_SUPERLINK_ADDRESS and that the SuperLink (or its gateway) is up and reachable from here")
    except OSError as exc:
        what = exc.strerror or str(exc)
        return (f"cannot reach the SuperLink at {route.address} ({what.lower()}); check METAI_NODE_SUPERLINK_ADDRESS "
                "and that the SuperLink (or its gateway) is up and reachable from here")


def _superlink_check(route: SuperLinkRoute) -> tuple[dict[str, Any], str | None]:
    problem = probe_superlink(route)
    return {"superlink_reachable": problem is None}, problem


def _signer_answers(socket_path: Path, hospital: str) -> tuple[dict[str, Any], str | None]:
    from node.signer import RemoteSigner, SignerError

    try:
        address = RemoteSigner(socket_path).address
    except SignerError as exc:
        return {"answering": False}, str(exc)
    if address != hospital:
        return {"answering": False}, f"it signs for {address}, not for this node's hospital {hospital}"
    return {"answering": True}, None
