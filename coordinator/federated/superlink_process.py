"""A SuperLink process: its command line, its environment, and whether it answers.

Shared by the coordinator service, which runs its managed SuperLink with them
(:mod:`coordinator.federated.managed`), and ``deploy``, which starts SuperLinks for a lab
(:func:`deploy.flower.start_superlink`). The SuperLink always listens on 127.0.0.1: in Flower 1.41
its one port serves the Fleet, Control and Runtime APIs, and the Control API asks no credentials.
See docs/flower.md.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from coordinator.federated.superlink import flwr_env, tool

__all__ = ["LOOPBACK", "SuperLinkTls", "answers", "superlink_command", "superlink_env"]

#: The only address a SuperLink started here listens on.
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class SuperLinkTls:
    """The SuperLink's TLS files: the CA its certificate chains to, the certificate, its key."""

    ca_cert: Path
    certificate: Path
    key: Path


def superlink_command(port: int, database: Path, tls: SuperLinkTls | None) -> list[str]:
    """The ``flower-superlink`` command line: 127.0.0.1:``port``, state in ``database``, apps in subprocesses.

    With ``tls`` it serves HTTPS and admits only SuperNodes whose keys were registered
    (``--enable-supernode-auth``); without, plain HTTP and any SuperNode (a lab on one machine).

    Raises:
        FlowerMissing: flwr is not installed in this venv.
    """
    cmd = [str(tool("flower-superlink")), "--host", LOOPBACK, "--port", str(port), "--database", str(database)]
    cmd += ["--isolation", "subprocess", "--disable-runtime-dependency-installation"]
    if tls is None:
        return [*cmd, "--insecure"]
    return [*cmd, "--ssl-ca-certfile", str(tls.ca_cert), "--ssl-certfile", str(tls.certificate),
            "--ssl-keyfile", str(tls.key), "--enable-supernode-auth"]


def superlink_env(flwr_home: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a SuperLink (or SuperNode) whose FLWR_HOME is ``flwr_home``.

    It is :func:`coordinator.federated.superlink.flwr_env` (this process's environment, plus
    ``extra_env``, plus Flower kept offline), plus the SuperExec poll interval unless
    ``extra_env`` or this environment sets it.
    """
    env = flwr_env(flwr_home, extra_env)
    # SuperExec waits this long between asks for a task (Flower's default 1 s), per round. Each ask
    # costs CPU in SuperExec and in the SuperLink / SuperNode it asks: measured on 2 cores, an idle
    # SuperLink with its SuperExec used 9.8 % of a core at 0.1 s, 2.6 % at 0.5 s (docs/flower.md).
    env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = env.get("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.5")
    return env


def answers(port: int, ca_cert: Path | None, *, timeout: float = 2.0) -> bool:
    """Whether the SuperLink on 127.0.0.1:``port`` answers ``/health`` with 200 (over TLS if ``ca_cert``)."""
    verify: ssl.SSLContext | bool = False if ca_cert is None else ssl.create_default_context(cafile=str(ca_cert))
    url = f"{'http' if ca_cert is None else 'https'}://{LOOPBACK}:{port}/health"
    try:
        with httpx.Client(verify=verify, timeout=timeout, trust_env=False) as client:  # never through a proxy
            return client.get(url).status_code == 200
    except (httpx.HTTPError, ssl.SSLError, OSError):
        return False
