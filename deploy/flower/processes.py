"""The Flower processes: start a SuperLink or SuperNode on 127.0.0.1, wait until it answers, stop it by PID.

A SuperLink serves its Fleet, Runtime and Control APIs on one port; a SuperNode its Runtime API
on its own. A SuperLink runs its ServerApps in ``subprocess`` isolation (a ``flower-superexec``
child starts ``flwr-serverapp`` per run from this venv's ``bin``). A SuperNode runs through
:mod:`node.federated.run_supernode` by default: one resident ClientApp worker handles every message
and Flower's fixed waits are shortened; ``isolation="subprocess"`` runs Flower's own
``flower-supernode``, one ``flwr-clientapp`` process per message. Each start records
the process (PID, start time, the children it had) in a JSON file, so that a later process can
:func:`load_process` and :func:`stop` it. See docs/flower.md.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coordinator.federated.flower_config import ConfigValue, checked_config, toml_text
from coordinator.federated.superlink import tool
from coordinator.federated.superlink_process import SuperLinkTls, answers, superlink_command, superlink_env
from deploy.errors import ServiceStartError
from deploy.flower_certs import FlowerSecurity, check_node_name
from deploy.process import HOST, descendants, free_port, read_log, spawn, start_time, stop_tree, tail
from deploy.threads import thread_env
from node.federated.pacing import Pacing
from node.federated.supernode import ISOLATIONS, NODE_ID, SuperLinkRoute, supernode_command

__all__ = ["ISOLATIONS", "SuperLinkProcess", "SuperNodeProcess", "check_security", "flower_env", "load_process",
           "start_superlink", "start_supernode", "stop"]


@dataclass(frozen=True)
class SuperLinkProcess:
    """A running ``flower-superlink``: PID, addresses (equal in 1.41: one port), files, security."""

    pid: int
    fleet_address: str  # SuperNodes connect here
    serverappio_address: str  # the Runtime API ServerApps use
    control_address: str  # the flwr CLI connects here
    log_file: Path
    database: Path
    flwr_home: Path
    ca_cert: Path | None  # set when it serves TLS (and then requires registered SuperNodes)
    children: tuple[tuple[int, int], ...] = ()  # (pid, start time) seen when it started, for stop()
    start_time: int | None = None  # of ``pid``, in clock ticks since boot: a reused PID is not stopped


@dataclass(frozen=True)
class SuperNodeProcess:
    """A running ``flower-supernode`` that the SuperLink has activated under ``node_id``."""

    pid: int
    name: str
    node_id: int
    clientappio_address: str  # its Runtime API, where its ClientApps connect
    log_file: Path
    flwr_home: Path
    node_config_file: Path
    children: tuple[tuple[int, int], ...] = ()
    start_time: int | None = None
    isolation: str = "subprocess"  # one of ISOLATIONS


def flower_env(run_dir: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for Flower processes whose FLWR_HOME is ``run_dir / "flwr-home"``.

    It is this process's environment, plus ``extra_env``, plus the Flower settings of
    docs/flower.md (:func:`coordinator.federated.superlink.flwr_env`, which ``extra_env``
    cannot override), plus the SuperExec poll interval (which it can): see
    :func:`coordinator.federated.superlink_process.superlink_env`.
    """
    return superlink_env(run_dir / "flwr-home", extra_env)


def start_superlink(
    run_dir: Path,
    *,
    security: FlowerSecurity | None = None,
    port: int | None = None,
    timeout: float = 60,
    extra_env: Mapping[str, str] | None = None,
) -> SuperLinkProcess:
    """Start a SuperLink on 127.0.0.1 and wait until it answers.

    Parameters:
        run_dir: holds ``superlink.log``, ``superlink.db`` (its state) and ``flwr-home/``.
        security: serve TLS with these certificates and admit only registered SuperNodes;
            None: plain HTTP, any SuperNode is admitted (a lab on one machine only).
        port: the one port of all its APIs; a free one if None.
        timeout: seconds to wait for ``/health`` to answer.
        extra_env: added to its environment, which its ServerApps inherit (e.g. the
            coordinator's ``METAI_COORDINATOR_*`` settings); this process's own is left alone.

    Raises:
        FlowerMissing: flwr is not installed in this venv.
        ServiceStartError: it exited or did not answer in time (its log is quoted).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    database = run_dir / "superlink.db"
    tls = None if security is None else SuperLinkTls(security.ca_cert, security.server_cert, security.server_key)
    log_file = run_dir / "superlink.log"
    proc = spawn(superlink_command(port, database, tls), log_file, env=flower_env(run_dir, extra_env))
    deadline = time.monotonic() + timeout
    try:
        while not answers(port, security.ca_cert if security else None):
            _check_alive(proc, "flower-superlink", log_file, deadline, timeout)
            time.sleep(0.1)
    except BaseException:  # not ready, or the caller was interrupted: leave nothing running
        stop_tree(proc.pid, (), 5.0)
        raise
    address = f"{HOST}:{port}"
    superlink = SuperLinkProcess(
        pid=proc.pid,
        fleet_address=address,
        serverappio_address=address,
        control_address=address,
        log_file=log_file,
        database=database,
        flwr_home=run_dir / "flwr-home",
        ca_cert=security.ca_cert if security else None,
        children=descendants(proc.pid),
        start_time=start_time(proc.pid),
    )
    _save(superlink, run_dir / "superlink.json")
    return superlink


def start_supernode(
    run_dir: Path,
    superlink: SuperLinkProcess,
    name: str,
    *,
    node_config: Mapping[str, ConfigValue],
    security: FlowerSecurity | None = None,
    port: int | None = None,
    timeout: float = 60,
    extra_env: Mapping[str, str] | None = None,
    torch_threads: int | None = None,
    isolation: str = "worker",
    pacing: Pacing | None = None,
) -> SuperNodeProcess:
    """Start SuperNode ``name`` and wait until the SuperLink has activated it.

    Parameters:
        run_dir: its files go to ``run_dir / f"supernode-{name}"``: ``supernode.log``,
            ``node-config.toml`` and ``flwr-home/`` (installed apps).
        superlink: the SuperLink to join.
        name: the node's name (its key pair in ``security``).
        node_config: what every ClientApp on this node sees as ``context.node_config``.
        security: the material the SuperLink was started with (TLS + this node's key).
        port: its Runtime API port; a free one if None.
        timeout: seconds to wait for activation (the log line ``SuperNode ID: <id>``).
        extra_env: added to its environment, which its ClientApps inherit.
        torch_threads: intra-op threads torch may use in its ClientApps (see
            :func:`deploy.threads.threads_per_node`); None: torch's default, one per core.
        isolation: ``worker``: through :mod:`node.federated.run_supernode`, one resident ClientApp
            worker for every message; ``subprocess``: one ``flwr-clientapp`` process per message.
        pacing: the SuperNode's waits (:class:`node.federated.pacing.Pacing`); None: its defaults
            with ``worker``, Flower's own (``flower-supernode`` as it is) with ``subprocess``.

    Raises:
        ValueError: a node_config key or value cannot be passed, or ``security`` does not
            match the SuperLink; ``torch_threads`` < 1; ``isolation`` is not one of ISOLATIONS.
        KeyError: ``security`` has no key pair for ``name``.
        ServiceStartError: it exited (e.g. exit code 305 when the SuperLink refuses an
            unregistered key) or was not activated in time; its log is quoted.
    """
    check_node_name(name)
    check_security(superlink, security)
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation is {isolation!r}; expected one of {', '.join(ISOLATIONS)}")
    node_dir = run_dir / f"supernode-{name}"
    node_dir.mkdir(parents=True, exist_ok=True)
    config_file = node_dir / "node-config.toml"  # a file: values may hold spaces and quotes
    config_file.write_text(toml_text(dict(checked_config(node_config, "node_config"))), encoding="utf-8")
    port = port or free_port()
    route = SuperLinkRoute(superlink.fleet_address, None) if security is None else \
        SuperLinkRoute(superlink.fleet_address, security.ca_cert, security.keys_of(name)[0])
    tool("flower-supernode")  # FlowerMissing, as for the SuperLink, if flwr is not installed
    # the command the hospital's serve runs
    cmd = supernode_command(route, port=port, node_config_file=config_file, isolation=isolation, pacing=pacing)
    log_file = node_dir / "supernode.log"
    log_start = log_file.stat().st_size if log_file.exists() else 0
    env = {**(thread_env(torch_threads) if torch_threads is not None else {}), **(extra_env or {})}
    proc = spawn(cmd, log_file, env=flower_env(node_dir, env))
    deadline = time.monotonic() + timeout
    try:
        while not (found := NODE_ID.search(read_log(log_file, log_start))):
            _check_alive(proc, f"flower-supernode {name!r}", log_file, deadline, timeout)
            time.sleep(0.1)
    except BaseException:  # refused, not ready, or the caller was interrupted: leave nothing running
        stop_tree(proc.pid, (), 5.0)
        raise
    node = SuperNodeProcess(
        pid=proc.pid,
        name=name,
        node_id=int(found.group(1)),
        clientappio_address=f"{HOST}:{port}",
        log_file=log_file,
        flwr_home=node_dir / "flwr-home",
        node_config_file=config_file,
        children=descendants(proc.pid),
        start_time=start_time(proc.pid),
        isolation=isolation,
    )
    _save(node, node_dir / "supernode.json")
    return node


def stop(process: SuperLinkProcess | SuperNodeProcess, timeout: float = 10.0) -> None:
    """Stop ``process`` by its PID (SIGTERM, SIGKILL after ``timeout``), then the children Flower spawned.

    Stopping twice is harmless. Its children (``flower-superexec`` and any app process) would
    exit by themselves within seconds of their parent, but are ended here so nothing outlives
    the call.
    """
    stop_tree(process.pid, process.children, timeout, process.start_time)


def load_process(path: Path) -> SuperLinkProcess | SuperNodeProcess:
    """Read the ``superlink.json`` / ``supernode.json`` written at start, e.g. to :func:`stop` it later.

    Raises:
        ValueError: the file does not describe a SuperLink or SuperNode.
    """
    data = json.loads(path.read_text(encoding="utf-8"))
    kinds: dict[str, type[SuperLinkProcess] | type[SuperNodeProcess]] = {
        "superlink": SuperLinkProcess,
        "supernode": SuperNodeProcess,
    }
    kind = kinds.get(data.pop("kind", None)) if isinstance(data, dict) else None
    if kind is None:
        raise ValueError(f"{path} does not describe a SuperLink or SuperNode (no known 'kind')")
    for key in ("log_file", "database", "flwr_home", "ca_cert", "node_config_file"):
        if data.get(key) is not None:
            data[key] = Path(data[key])
    data["children"] = tuple((int(pid), int(started)) for pid, started in data.get("children", []))
    return kind(**data)


def _save(process: SuperLinkProcess | SuperNodeProcess, path: Path) -> None:
    data = {key: str(value) if isinstance(value, Path) else value for key, value in vars(process).items()}
    data["kind"] = "superlink" if isinstance(process, SuperLinkProcess) else "supernode"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _check_alive(proc: subprocess.Popen[bytes], what: str, log_file: Path, deadline: float, timeout: float) -> None:
    if proc.poll() is not None:
        raise ServiceStartError(f"{what} exited with {proc.returncode}:\n{tail(log_file)}")
    if time.monotonic() > deadline:
        raise ServiceStartError(f"{what} was not ready within {timeout} s:\n{tail(log_file)}")


def check_security(superlink: SuperLinkProcess, security: FlowerSecurity | None) -> None:
    """Refuse ``security`` that does not match how ``superlink`` was started (TLS or not).

    Raises:
        ValueError: it does not.
    """
    if (superlink.ca_cert is None) != (security is None):
        state = "without" if superlink.ca_cert is None else "with"
        raise ValueError(f"the SuperLink was started {state} TLS; pass the same security= it was started with")
