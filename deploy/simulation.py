"""Quick runs of the study app on Flower's simulation engine (Ray), in this process, on 127.0.0.1.

The same ServerApp and ClientApp as on the deployment engine -- the components the app's
``pyproject.toml`` names (``coordinator.server_app:app``, ``node.client_app:app``) -- without
SuperLink or SuperNodes: :func:`simulate` runs the ServerApp in a
thread here and one virtual SuperNode per hospital node as Ray actors (one CPU each, one torch
thread each). A virtual SuperNode's node config holds only ``partition-id`` and
``num-partitions``; the ClientApp then finds its node in ``METAI_SIMULATION_NODES``, a JSON
list of ``{"node-dir": ..., "passphrase-file": ...}`` indexed by partition id. The chain is the
real one: contributions, rounds and completion are anchored exactly as in a deployment.

Flower 1.41's ``run_simulation`` gives the apps an empty ``context.run_config``; the apps here
are wrapped so that theirs is the app's ``[tool.flwr.app.config]`` merged with the overrides,
as a SuperLink would give them. Ray listens on loopback only because
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set before Ray is imported (Ray then takes 127.0.0.1
as the node address; otherwise its servers bind every interface). See docs/federated.md,
"Simulation engine".
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import sys
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from coordinator.run_config import RunConfigName
from deploy.errors import DeployError, ToolMissing
from deploy.federation import APP_DIR, NodeSpec, NodeSpecError
from deploy.flower import ConfigValue, read_app_config
from node.node_config import SIMULATION_NODES_ENV

__all__ = ["NODES_ENV", "SimulationError", "SimulationResult", "simulate", "simulation_env"]

NODES_ENV = SIMULATION_NODES_ENV
_OFFLINE_LOOPBACK = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray's node address becomes 127.0.0.1, and its servers bind it only
    "RAY_USAGE_STATS_ENABLED": "0",  # else Ray reports usage to its makers
    "FLWR_TELEMETRY_ENABLED": "0",
}
_ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # per ClientApp actor: one CPU each


class SimulationError(DeployError, RuntimeError):
    """The simulation could not start, or its ServerApp failed (the cause is chained)."""


@dataclass(frozen=True)
class SimulationResult:
    """A finished simulation: the run config both apps saw, and how long it took."""

    run_config: dict[str, ConfigValue]
    seconds: float


def simulation_env(nodes: Sequence[NodeSpec]) -> dict[str, str]:
    """Return ``METAI_SIMULATION_NODES`` for ``nodes`` (entry ``i`` is virtual SuperNode ``partition-id = i``).

    Raises:
        NodeSpecError: a node directory or passphrase file is missing (each node needs one).
    """
    entries = []
    for node in nodes:
        node.check()
        if node.passphrase_file is None:
            raise NodeSpecError(f"node {node.node_dir} has no passphrase file; give it as DIR=PASSPHRASE_FILE")
        entries.append(node.node_config())
    return {NODES_ENV: json.dumps(entries)}


def simulate(
    nodes: Sequence[NodeSpec],
    study_id: int,
    run_config: Mapping[str, ConfigValue] | None = None,
    *,
    coordinator_env: Mapping[str, str] | None = None,
    app_dir: Path = APP_DIR,
) -> SimulationResult:
    """Run study ``study_id`` with the ServerApp and ClientApp on Flower's simulation engine.

    Parameters:
        nodes: the hospital nodes, one virtual SuperNode each (each needs a passphrase file).
        study_id: the study on chain; it must be RUNNING.
        run_config: overrides of ``[tool.flwr.app.config]`` besides ``study-id``.
        coordinator_env: the ServerApp's ``METAI_COORDINATOR_*`` settings
            (see :func:`deploy.federation.coordinator_env`); set in this process's environment,
            like everything else here, only while the simulation runs.
        app_dir: where ``pyproject.toml`` declares the app (``[tool.flwr.app.components]``) and
            its config; it is put on ``sys.path`` (and so on Ray's workers') while the run lasts.

    Raises:
        NodeSpecError: no nodes, or a node directory or passphrase file is missing.
        ValueError: ``study_id`` is not positive, a run_config key is not in the app's config, or
            the app's components cannot be read or imported.
        ToolMissing: Ray is not installed.
        SimulationError: Ray is already running in this process (or was imported listening on
            every interface), or the ServerApp failed; the cause is chained.
    """
    if not nodes:
        raise NodeSpecError("no hospital nodes given; a simulation needs at least one node directory")
    if isinstance(study_id, bool) or not isinstance(study_id, int) or study_id < 1:
        raise ValueError(f"study id {study_id!r} is not a positive integer; give the id the chain assigned")
    defaults = read_app_config(app_dir)
    overrides = {**(run_config or {}), RunConfigName.STUDY_ID: study_id}
    if unknown := sorted(set(overrides) - set(defaults)):
        raise ValueError(f"run_config keys {unknown} are not in [tool.flwr.app.config] of {app_dir / 'pyproject.toml'}")
    merged = {**defaults, **overrides}
    env = {**simulation_env(nodes), **(coordinator_env or {}), **_OFFLINE_LOOPBACK, **_ONE_THREAD}
    if importlib.util.find_spec("ray") is None:
        raise ToolMissing("Ray is not installed: pip install 'flwr[simulation]==1.41.0' in this venv")
    started = time.monotonic()
    _telemetry_off()
    with _environment(env), _on_path(app_dir):
        _refuse_foreign_ray()
        from flwr.simulation import run_simulation

        server_app, client_app = _components(app_dir)
        cpus = max(1, min(len(nodes), os.cpu_count() or 1))  # one actor per node at most: each imports torch
        try:
            run_simulation(
                server_app=_ConfiguredServerApp(server_app, merged),
                client_app=_ConfiguredClientApp(client_app, merged),
                num_supernodes=len(nodes),
                backend_config={
                    "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                    "init_args": {"num_cpus": cpus, "num_gpus": 0, "include_dashboard": False},
                },
            )
        except Exception as exc:  # Flower re-raises the ServerApp's own exception, or wraps Ray's
            raise SimulationError(f"simulation of study {study_id} failed: {type(exc).__name__}: {exc}") from exc
    return SimulationResult(merged, time.monotonic() - started)


class _ConfiguredServerApp(ServerApp):
    """A ServerApp that hands its inner app ``run_config`` as ``context.run_config``."""

    def __init__(self, inner: ServerApp, run_config: Mapping[str, ConfigValue]) -> None:
        super().__init__()
        self._inner = inner
        self._run_config = dict(run_config)

    def __call__(self, grid: Grid, context: Context) -> None:
        context.run_config = dict(self._run_config)
        self._inner(grid, context)


class _ConfiguredClientApp(ClientApp):
    """A ClientApp that hands its inner app ``run_config``; Ray pickles it by reference to this module."""

    def __init__(self, inner: ClientApp, run_config: Mapping[str, ConfigValue]) -> None:
        super().__init__()
        self._inner = inner
        self._run_config = dict(run_config)

    def __call__(self, message: Message, context: Context) -> Message:
        # Flower refuses a ClientApp that changes its context's run_config, so the inner app gets a
        # copy of the context that shares its state (what a ClientApp may change) with the original.
        configured = Context(
            run_id=context.run_id,
            node_id=context.node_id,
            node_config=context.node_config,
            state=context.state,
            run_config=dict(self._run_config),
        )
        return self._inner(message, configured)


def _components(app_dir: Path) -> tuple[ServerApp, ClientApp]:
    """Import the ServerApp and ClientApp that ``[tool.flwr.app.components]`` names."""
    try:
        project = tomllib.loads((app_dir / "pyproject.toml").read_text(encoding="utf-8"))
        components = project["tool"]["flwr"]["app"]["components"]
        server_app, client_app = _attribute(components["serverapp"]), _attribute(components["clientapp"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, ImportError, AttributeError) as exc:
        raise ValueError(f"the Flower app in {app_dir} cannot be loaded: {type(exc).__name__}: {exc}") from exc
    if not isinstance(server_app, ServerApp) or not isinstance(client_app, ClientApp):
        raise ValueError(f"{app_dir}: [tool.flwr.app.components] must name a ServerApp and a ClientApp")
    return server_app, client_app


def _attribute(reference: str) -> object:
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def _on_path(directory: Path) -> Iterator[None]:
    entry = str(directory.resolve())
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _refuse_foreign_ray() -> None:
    ray = sys.modules.get("ray")
    if ray is None:
        return
    if ray.is_initialized():
        raise SimulationError("Ray is already running in this process; simulate() starts (and stops) its own")
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and getattr(constants, "ENABLE_RAY_CLUSTER", False):
        raise SimulationError(
            "Ray was imported before simulate() without RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, so it would listen on "
            "every interface; set that variable before anything imports ray"
        )


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ while the block runs, then put the whole environment back as it was.

    Whole: Flower's Ray backend sets PYTHONPATH, and Ray itself PYTHONBREAKPOINT and RAY_* variables.
    """
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def _telemetry_off() -> None:
    """Turn Flower's telemetry off in this process for good, even if flwr was imported before
    FLWR_TELEMETRY_ENABLED=0 was set.

    Flower reads the variable once, at import, and posts each event to flower.ai from a daemon
    thread that may run after the simulation has returned: a flag put back afterwards let those
    events out (and, offline, an event can hold the interpreter's exit for up to 60 s).
    """
    from flwr.supercore import telemetry

    telemetry.FLWR_TELEMETRY_ENABLED = "0"
