"""Start and stop a Flower deployment (SuperLink + one SuperNode per hospital) and launch runs on it.

Everything listens on 127.0.0.1 and works offline. Flower 1.41 serves the Fleet, Runtime
(formerly ServerAppIo) and Control APIs of a SuperLink on ONE HTTP(S) port (``--host/--port``),
so the three addresses of :class:`SuperLinkProcess` are equal; a SuperNode serves its Runtime API
(formerly ClientAppIo) on its own port. Both run their apps in ``subprocess`` isolation: a
``flower-superexec`` child launches ``flwr-serverapp`` / ``flwr-clientapp`` per task from the
venv's ``bin`` (first on PATH), with runtime dependency installation disabled, so apps import
what this venv has. With ``security`` the SuperLink serves TLS and admits only SuperNodes whose
public keys were registered (:func:`register_supernodes`). Processes are stopped by PID, with
the Flower-spawned children they had. See docs/flower.md.

By concern:

- :mod:`deploy.flower.processes`: starting, recording and stopping the processes;
- :mod:`deploy.flower.runs`: the ``flwr`` CLI: connections, registration, submitting and following runs;
- :mod:`deploy.flower.config`: run-config defaults, value checks, the TOML files Flower reads;
- :mod:`deploy.flower_certs`: the TLS and SuperNode-authentication material.
"""

from deploy.flower.config import ConfigValue, read_app_config
from deploy.flower.processes import (
    SuperLinkProcess,
    SuperNodeProcess,
    flower_env,
    load_process,
    start_superlink,
    start_supernode,
    stop,
)
from deploy.flower.runs import FlowerRunError, RunResult, register_supernodes, run_app, write_federation_config
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
