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
    NODE_ID,
    STILL_ONLINE,
    UNKNOWN_KEY,
    SuperLinkRoute,
    deactivate,
    supernode_command,
    supernode_env,
)
from node.supervisor import ChildSpec

__all__ = ["ServePlan", "SuperNodeWatch", "children", "probe_superlink"]

PROBE_TIMEOUT = 5.0


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
        start_failure=watch.start_failure,
        retry_start=lambda line: STILL_ONLINE.search(line) is not None,
        before_start=watch.before_start,
        preflight=lambda: probe_superlink(plan.route),
        check=lambda: _superlink_check(plan.route),
    )
    return [signer, supernode]


class SuperNodeWatch:
    """What serve knows of its SuperNode across restarts: the node id the SuperLink gave it.

    Before each restart (and before the first start, after a serve that was killed) it tells
    the SuperLink that the previous process is gone (:func:`node.federated.supernode.deactivate`),
    so the new one is admitted at once instead of after two missed heartbeats.
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

    def start_failure(self, line: str) -> str | None:
        """The reason serve cannot start when the SuperLink does not know the key."""
        if UNKNOWN_KEY not in line:
            return None
        return (f"the SuperLink at {self.route.address} refused this node's SuperNode key {self.route.private_key}: "
                "it is not registered there; register the public key with the coordinator operator "
                "(`metai-node federation-key` prints it)")

    def before_start(self, lines: Sequence[str] = ()) -> None:
        """Deactivate the node id of the previous process (known, or named by its refusal)."""
        for line in lines:
            if (found := STILL_ONLINE.search(line)) is not None:
                self.node_id = int(found.group(1))
        if self.node_id is None or self.route.private_key is None:
            return
        problem = deactivate(self.route, self.node_id)
        if problem is None:
            self.log.info("told the SuperLink that node %d of the previous SuperNode process is offline", self.node_id)
        else:
            self.log.info("node %d was not deactivated (%s); the SuperLink counts it offline already, or will "
                          "after two missed heartbeats", self.node_id, problem)


def probe_superlink(route: SuperLinkRoute, timeout: float = PROBE_TIMEOUT) -> str | None:
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
