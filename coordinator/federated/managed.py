"""The SuperLink the coordinator service runs itself (``METAI_COORDINATOR_SUPERLINK=managed``), and its gateway.

Process layout on the coordinator host::

    metai-coordinator serve            API + portal on METAI_COORDINATOR_HOST:PORT
      python -m coordinator.relay      the consent relay
      flower-superlink                 127.0.0.1:METAI_COORDINATOR_SUPERLINK_PORT only (Fleet, Control,
        flower-superexec, ServerApps   Runtime APIs), TLS, --enable-supernode-auth
      python -m coordinator.federated.gateway
                                       METAI_COORDINATOR_FLEET_HOST:FLEET_PORT, TLS with the coordinator's
                                       certificate; forwards /v1/fleet/* and /health to the SuperLink

Both children are supervised (:class:`coordinator.federated.supervisor.Supervised`): started
before the service answers, started again if they die, stopped with the service. The
SuperLink's state is ``<superlink_dir>/superlink.db``, so a restart (of the SuperLink or the
whole service) keeps its registered SuperNodes and its record of runs. A run in progress loses its
ServerApp when the SuperLink stops (its children are stopped with it); starting the study again
continues after the last round anchored on chain (docs/federated.md).

The SuperLink's own TLS is for loopback only: at every start the service makes a fresh CA and a
certificate for 127.0.0.1 in ``<superlink_dir>/tls/`` (the CA's key is never written, so nobody
can issue another). Only the service, its ``flwr`` commands, the gateway and the operator's
``metai-coordinator supernode`` commands use it; hospitals see only the gateway's certificate,
issued by the consortium CA.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from coordinator.core.config import CoordinatorSettings
from coordinator.federated.superlink import SuperLinkConnection
from coordinator.federated.superlink_process import (
    LOOPBACK,
    SuperLinkTls,
    answers,
    superlink_command,
    superlink_env,
)
from coordinator.federated.supervisor import Supervised
from coordinator.federated.tls import (
    check_server_files,
    make_ca,
    make_server_certificate,
    write_certificate,
    write_issued,
)

__all__ = ["ManagedLayout", "ManagedSuperLink", "superlink_connection"]

_log = logging.getLogger("metai.coordinator.superlink")
_ROOT = Path(__file__).resolve().parents[2]  # the project, for ``-m coordinator.federated.gateway`` to import


@dataclass(frozen=True)
class ManagedLayout:
    """Where the managed SuperLink's files are, under ``METAI_COORDINATOR_SUPERLINK_DIR``."""

    root: Path

    @property
    def database(self) -> Path:
        """The SuperLink's state (SQLite): registered SuperNodes, runs."""
        return self.root / "superlink.db"

    @property
    def flwr_home(self) -> Path:
        """FLWR_HOME of the SuperLink and its ServerApps."""
        return self.root / "flwr-home"

    @property
    def tls(self) -> SuperLinkTls:
        """The SuperLink's loopback TLS files (remade at every start of the service)."""
        folder = self.root / "tls"
        return SuperLinkTls(folder / "ca.pem", folder / "superlink.pem", folder / "superlink.key")

    def log(self, child: str) -> Path:
        """The log file of ``child`` (``superlink`` or ``gateway``)."""
        return self.root / f"{child}.log"

    def record(self, child: str) -> Path:
        """Where the supervisor records ``child``'s PID, start time and children."""
        return self.root / f"{child}.pid.json"


def superlink_connection(settings: CoordinatorSettings) -> SuperLinkConnection | None:
    """How this service (and the operator's commands on this host) reach the SuperLink's Control API.

    Managed: 127.0.0.1:``superlink_port`` over the loopback TLS. External: ``superlink_address``
    (None when unset: no SuperLink).
    """
    if settings.managed:
        return SuperLinkConnection(f"{LOOPBACK}:{settings.superlink_port}",
                                   ManagedLayout(settings.superlink_dir).tls.ca_cert.resolve())
    if settings.superlink_address is None:
        return None
    return SuperLinkConnection(settings.superlink_address, settings.superlink_root_certificates)


class ManagedSuperLink:
    """The SuperLink and the Fleet gateway of a service whose settings say ``superlink=managed``."""

    def __init__(self, settings: CoordinatorSettings) -> None:
        """Prepare (nothing starts yet) from ``settings``, which must be managed ones."""
        cert, key, ca = settings.fleet_cert, settings.fleet_key, settings.fleet_ca
        if not settings.managed or cert is None or key is None or ca is None:
            raise ValueError("ManagedSuperLink needs settings with superlink=managed and the fleet_* files")
        self.settings = settings
        self.fleet_cert, self.fleet_key, self.fleet_ca = cert.resolve(), key.resolve(), ca.resolve()
        self.layout = ManagedLayout(settings.superlink_dir.resolve())
        tls = self.layout.tls
        self.superlink = Supervised(
            "SuperLink", superlink_command(settings.superlink_port, self.layout.database, tls),
            log_file=self.layout.log("superlink"), record=self.layout.record("superlink"),
            env=superlink_env(self.layout.flwr_home, settings.as_env()),  # its ServerApps read the settings
            ready=lambda: answers(settings.superlink_port, tls.ca_cert))
        gateway = [sys.executable, "-m", "coordinator.federated.gateway", "--host", settings.fleet_host,
                   "--port", str(settings.fleet_port), "--cert", str(self.fleet_cert),
                   "--key", str(self.fleet_key), "--upstream-port", str(settings.superlink_port),
                   "--upstream-ca", str(tls.ca_cert), "--parent", str(os.getpid())]
        self.gateway = Supervised(
            "Fleet gateway", [*gateway, *(["--log-json"] if settings.log_json else [])],
            log_file=self.layout.log("gateway"), record=self.layout.record("gateway"), env=_gateway_env(),
            ready=self._gateway_answers)

    def start(self) -> None:
        """Check the gateway's certificate, make the loopback TLS, start the SuperLink, then the gateway.

        Raises:
            CoordinatorConfigError: a certificate, key or CA file is missing, or they do not fit
                together (see :func:`coordinator.federated.tls.check_server_files`).
            ChildStartError: the SuperLink or the gateway did not start (its log is quoted).
        """
        settings = self.settings
        names = check_server_files(self.fleet_cert, self.fleet_key, self.fleet_ca)
        _warn_if_unnamed(settings.fleet_host, names.ips)
        self.layout.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._make_loopback_tls()
        self.superlink.start()
        try:
            self.gateway.start()
        except BaseException:
            self.superlink.stop()
            raise
        _log.info("Fleet gateway on %s:%d for %s (certificate valid until %s); SuperLink on %s:%d, state %s",
                  settings.fleet_host, settings.fleet_port, ", ".join([*names.dns, *names.ips]),
                  f"{names.not_after:%Y-%m-%d}", LOOPBACK, settings.superlink_port, self.layout.database)

    def stop(self) -> None:
        """Stop the gateway, then the SuperLink and what it spawned (a run in progress loses its ServerApp)."""
        self.gateway.stop()
        self.superlink.stop()

    def _make_loopback_tls(self) -> None:
        tls = self.layout.tls
        ca = make_ca("MeTAI managed SuperLink loopback CA", days=3650)
        server = make_server_certificate(ca, dns=["localhost"], ips=[LOOPBACK], common_name="MeTAI managed SuperLink",
                                         days=3650)
        tls.ca_cert.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_certificate(ca.certificate, tls.ca_cert)
        write_issued(server, tls.certificate, tls.key, replace=True)

    def _gateway_answers(self) -> bool:
        """Whether the gateway answers HTTPS at its address (any status: the SuperLink behind may be busy)."""
        host = self.settings.fleet_host
        probe = {"0.0.0.0": LOOPBACK, "::": "::1", "": LOOPBACK}.get(host, host)
        context = ssl.create_default_context(cafile=str(self.fleet_ca))
        context.check_hostname = False  # the chain is checked; the probe's address need not be a name it covers
        netloc = f"[{probe}]" if ":" in probe else probe
        try:
            with httpx.Client(verify=context, timeout=2.0, trust_env=False) as client:
                client.get(f"https://{netloc}:{self.settings.fleet_port}/health")
            return True
        except (httpx.HTTPError, ssl.SSLError, OSError):
            return False


def _gateway_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def _warn_if_unnamed(host: str, ips: tuple[str, ...]) -> None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: what it resolves to is the operator's business
    if not address.is_unspecified and str(address) not in ips:
        _log.warning("the Fleet gateway listens on %s, which its certificate does not name (IPs: %s); hospitals that "
                     "connect by this address will refuse it", host, ", ".join(ips) or "none")
