"""Start and stop a Flower deployment (SuperLink + one SuperNode per hospital) on this machine, and run apps on it.

Everything listens on 127.0.0.1 and works offline. Flower 1.41 serves the Fleet, Runtime
(formerly ServerAppIo) and Control APIs of a SuperLink on ONE HTTP(S) port (``--host/--port``),
so the three addresses of :class:`SuperLinkProcess` are equal; a SuperNode serves its Runtime API
(formerly ClientAppIo) on its own port. A SuperLink runs its ServerApps in ``subprocess``
isolation: a ``flower-superexec`` child launches ``flwr-serverapp`` per run from the venv's
``bin`` (first on PATH), with runtime dependency installation disabled, so apps import what this
venv has. A SuperNode runs through :mod:`node.federated.supernode` by default: one resident
ClientApp worker handles every message (``isolation="subprocess"``: Flower's ``flwr-clientapp``
per message). With ``security`` the SuperLink serves TLS and admits only SuperNodes whose
public keys were registered (:func:`register_supernodes`). Processes are stopped by PID, with
the Flower-spawned children they had. See docs/flower.md.

By concern:

- :mod:`deploy.flower.processes`: starting, recording and stopping the processes;
- :mod:`deploy.flower.connections`: the CLI's connection to a SuperLink started here, SuperNode registration;
- :mod:`deploy.flower_certs`: the TLS and SuperNode-authentication material.

Submitting and following runs (:func:`run_app`) and the config files Flower reads
(:func:`read_app_config`) are the coordinator's code, in :mod:`coordinator.federated`: the
coordinator service launches studies with it, and this package re-exports it for a lab.
"""

from coordinator.federated.flower_config import ConfigValue, read_app_config
from coordinator.federated.superlink import FlowerRunError, RunResult, run_app
from deploy.flower.connections import register_supernodes, write_federation_config
from deploy.flower.processes import (
    SuperLinkProcess,
    SuperNodeProcess,
    flower_env,
    load_process,
    start_superlink,
    start_supernode,
    stop,
)
from deploy.flower_certs import FlowerSecurity, make_security

__all__ = [
    "ConfigValue",
    "FlowerRunError",
    "FlowerSecurity",
    "RunResult",
    "SuperLinkProcess",
    "SuperNodeProcess",
    "flower_env",
    "load_process",
    "make_security",
    "read_app_config",
    "register_supernodes",
    "run_app",
    "start_superlink",
    "start_supernode",
    "stop",
    "write_federation_config",
]
