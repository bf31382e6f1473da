"""Where benchmarks/federated.py puts a run's processes: all on this host's loopback, or on hosts of their own.

The multi-host placement uses a lab of network namespaces joined by a bridge (deploy/netns.py;
root only): ``chain`` runs Anvil, ``coord`` runs the SuperLink on its own loopback with its
ServerApps and the Fleet gateway (``python -m coordinator.federated.gateway``) on its address,
and each ``h<i>`` runs hospital ``i``'s signing agent and SuperNode, which reaches the SuperLink
only through the gateway, over TLS, with its registered key: the layout of docs/flower.md's
"Hospitals and the coordinator on different machines" and docs/coordinator.md's managed
SuperLink. Each host has its own network stack, so every request between them goes through
veth pairs and a bridge; the bridge adds no delay of its own (``tc netem`` is not on every
kernel, this machine's included).
"""

from __future__ import annotations

import contextlib
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from deploy.errors import ServiceStartError
from deploy.flower import FlowerSecurity, SuperLinkProcess
from deploy.netns import Lab as NetLab
from deploy.process import free_port, spawn, tail

__all__ = ["Placement", "hospital_host"]

_GATEWAY_WAIT = 30.0


def hospital_host(index: int) -> str:
    """The host name of hospital ``index`` in a multi-host placement."""
    return f"h{index}"


@dataclass(frozen=True)
class Placement:
    """All processes on this host's loopback (``net`` None), or on the hosts of ``net``."""

    net: NetLab | None = None

    @property
    def hosts(self) -> bool:
        """Whether the processes go to hosts of their own."""
        return self.net is not None

    @contextlib.contextmanager
    def at(self, host: str) -> Iterator[None]:
        """Run the block (and the processes it starts) on ``host``; on the loopback placement, here."""
        if self.net is None:
            yield
            return
        with self.net.inside(host):
            yield

    def address(self, host: str) -> str:
        """The address of ``host`` on the bridge; 127.0.0.1 on the loopback placement."""
        return "127.0.0.1" if self.net is None else self.net[host].address

    def fleet(self, superlink: SuperLinkProcess, security: FlowerSecurity | None, log_file: Path
              ) -> tuple[SuperLinkProcess, int | None]:
        """The SuperLink as the hospitals reach it, and the PID of the gateway started for it (or None).

        On hosts, start the Fleet gateway on ``coord``'s address in front of ``superlink`` (which
        listens on ``coord``'s loopback) and wait until it accepts connections.

        Raises:
            ValueError: hosts without ``security`` (the gateway serves TLS only).
            ServiceStartError: the gateway did not accept connections in time (its log is quoted).
        """
        if self.net is None:
            return superlink, None
        if security is None:
            raise ValueError("hospitals on hosts of their own reach the SuperLink through the gateway, over TLS only")
        address, port = self.address("coord"), free_port()
        upstream = int(superlink.fleet_address.rsplit(":", 1)[1])
        cmd = [sys.executable, "-m", "coordinator.federated.gateway", "--host", address, "--port", str(port),
               "--cert", str(security.server_cert), "--key", str(security.server_key),
               "--upstream-port", str(upstream), "--upstream-ca", str(security.ca_cert)]
        with self.at("coord"):
            proc = spawn(cmd, log_file)
            deadline = time.monotonic() + _GATEWAY_WAIT
            while not _accepts(address, port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise ServiceStartError(f"the Fleet gateway on {address}:{port} did not start:\n{tail(log_file)}")
                time.sleep(0.1)
        return replace(superlink, fleet_address=f"{address}:{port}"), proc.pid


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0):
            return True
    except OSError:
        return False
