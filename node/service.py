"""``metai-node serve``: the hospital's SuperNode and signing agent, supervised, in the foreground.

One long-running process (for systemd ``Type=simple``/``exec``) that:

1. checks everything it can before starting anything (:func:`plan`): the node directory, the
   passphrase (against the node secrets), the SuperLink's address and CA certificate, the
   SuperNode key, the socket path; each problem is one line and exit 1;
2. takes the node's runtime directory (a lock: one serve per node) and cleans up after a
   previous serve that was killed (:mod:`node.service_state`);
3. answers ``GET http://127.0.0.1:<METAI_NODE_HEALTH_PORT>/health`` (:mod:`node.health`);
4. starts its children (:mod:`node.service_children`): the signing agent, which unlocks the
   hospital key once and signs the ClientApps' contributions over a Unix socket, then the
   SuperNode, connected to the consortium SuperLink over TLS with the node's own key, and
   waits until the agent listens and the SuperLink has activated the SuperNode. A child that
   cannot start (wrong passphrase, chain down, key not registered, SuperLink unreachable) ends
   serve with its reason in one line;
5. then restarts any child that exits, with backoff (:mod:`node.supervisor`), until SIGTERM or
   SIGINT, when it stops the children (SIGTERM, SIGKILL after 10 s), removes the socket and
   exits 0.

Why the signing agent is a child process and not a thread of serve: it is restarted, logged
and reported like the SuperNode; a fault in it (the chain client hanging, a crash in a
library) cannot take the supervisor or the health check down with it; serve itself stays
small (no web3) and answers its health check at once; and it is the same program
(``python -m node.signer``) that ``deploy`` runs and the tests check. The cost is a second
unlock of the key when the agent is restarted.

Logs go to ``<METAI_NODE_LOG_DIR>/serve.log``, ``signer.log`` and ``supernode.log``, rotated by
size (:mod:`node.logfiles`). Standard output gets one line once serve is up and one when it
stopped; standard error only the error line of a serve that could not start.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from node.config import SIGNER_SOCKET, NodeInfo, NodeSettings, check_socket_path
from node.errors import NodeConfigError
from node.federated.supernode import LOOPBACK, SuperLinkRoute, supernode_node_config, write_node_config
from node.health import HealthServer
from node.logfiles import LogFile, serve_logger
from node.private import private_umask
from node.procs import INSTANCE_VARIABLE, start_time, stop_processes, tagged
from node.service_children import ServePlan, SuperNodeWatch, children
from node.service_report import Report
from node.service_state import ServeLock, ServeState
from node.supervisor import Supervisor

__all__ = ["STOP_TIMEOUT", "plan", "serve"]

#: Seconds a child has to stop after SIGTERM before it is killed.
STOP_TIMEOUT = 10.0


def plan(settings: NodeSettings) -> ServePlan:
    """Check the settings and the node for serve and resolve what it runs with; start nothing.

    Raises:
        NodeConfigError: a setting is missing, a file is missing or unreadable, the socket path is too long.
        FederationKeyError: the SuperNode key is not a P-384 OpenSSH private key.
        KeyStoreError: the passphrase does not unlock the node.
    """
    try:
        info = NodeInfo.load(settings.dir)
    except NodeConfigError as exc:
        raise NodeConfigError(f"{exc}; the node directory is METAI_NODE_DIR") from None
    passphrase = settings.require_passphrase()
    address, ca = settings.require_superlink()
    key = None
    if ca is not None:
        key = settings.supernode_key_path.absolute()
        _check_key(key, custom=settings.supernode_key is not None)
        ca = ca.absolute()
        _check_ca(ca)
    runtime = settings.runtime_path.absolute()
    check_socket_path(runtime / SIGNER_SOCKET, "METAI_NODE_RUNTIME_DIR")
    from node.keys import load_secrets

    load_secrets(settings.dir, passphrase)  # a wrong passphrase is named here, before anything starts
    return ServePlan(
        node_dir=settings.dir.resolve(),
        hospital=info.hospital_address,
        route=SuperLinkRoute(address, ca, key),
        supernode_port=settings.supernode_port,
        signer_socket=runtime / SIGNER_SOCKET,
        node_config_file=runtime / "node-config.toml",
        flwr_home=runtime / "flwr-home",
        # What serve loaded (from the environment or .env) reaches every child, whatever its working directory.
        env={**os.environ, **settings.as_env()},
    )


def serve(settings: NodeSettings, *, echo: Callable[[str], None] = print) -> None:
    """Run the node's SuperNode and signing agent until SIGTERM or SIGINT (see the module docstring).

    Parameters:
        settings: the node's settings.
        echo: where the "up" and "stopped" lines go (standard output).

    Raises:
        NodeError: serve cannot start (the message says why and what to do); nothing is left running.
    """
    checked = plan(settings)
    private_umask()
    runtime = settings.runtime_path.absolute()
    with ServeLock(runtime) as lock:
        log = serve_logger(settings.log_path / "serve.log", settings.log_max_bytes, settings.log_backups)
        log.info("serve starting for node %s (hospital %s), SuperLink %s", checked.node_dir, checked.hospital,
                 checked.route.address)
        _after_previous(lock.previous, log)
        instance = uuid.uuid4().hex
        checked = dataclasses.replace(checked, env={**checked.env, INSTANCE_VARIABLE: instance})
        write_node_config(checked.node_config_file, supernode_node_config(
            checked.node_dir, signer_socket=checked.signer_socket, rpc_url=settings.rpc_url))
        previous = lock.previous
        watch = SuperNodeWatch(checked.route, log, previous.node_id if previous is not None else None)
        specs = children(checked, watch)
        log_files = {spec.name: LogFile(settings.log_path / f"{spec.name}.log", settings.log_max_bytes,
                                        settings.log_backups) for spec in specs}
        state = ServeState(pid=os.getpid(), start_time=start_time(os.getpid()), instance=instance)
        stopping = threading.Event()

        def record() -> None:
            state.children = {name: [pid, started] for name, (pid, started) in supervisor.processes().items()}
            state.node_id = watch.node_id
            lock.record(state)

        supervisor = Supervisor(specs, log_files, log, stopping, on_change=record)
        report = Report(checked, supervisor)
        record()
        try:
            with _stop_on_signals(stopping), _health(settings.health_port, report), _cleanup(
                    supervisor, instance, checked, log, log_files):
                _check_port_free(settings.supernode_port)
                if previous is not None and not previous.clean:
                    watch.deactivate()  # the previous serve was killed: so may its SuperNode have been
                if supervisor.start(settings.start_timeout):
                    report.phase = "running"
                    log.info("serve is up: SuperNode node id %s", watch.node_id)
                    echo(f"metai-node serve: node {checked.hospital} is SuperNode {watch.node_id} on "
                         f"{checked.route.address}; health on http://{LOOPBACK}:{settings.health_port}/health; "
                         f"logs in {settings.log_path.absolute()}")
                    supervisor.run()
                report.phase = "stopping"
                log.info("stopping (signal received)")
        except Exception as exc:
            log.error("serve stops on an error: %s", exc)
            raise
        finally:
            state.clean = True
            record()
    echo("metai-node serve: stopped")


def _after_previous(previous: ServeState | None, log: Any) -> None:
    """Stop whatever a previous serve that did not stop cleanly left running."""
    if previous is None or previous.clean:
        return
    left = tagged(previous.instance)
    recorded = [(pid, started) for pid, started in previous.children.values() if pid and started]
    found = dict.fromkeys([*left, *recorded])
    stopped = stop_processes(list(found), STOP_TIMEOUT)
    log.warning("the previous serve (pid %d) did not stop cleanly; stopped %d of its processes still running",
                previous.pid, len(stopped))


def _check_key(key: Path, *, custom: bool) -> None:
    from node.federation_key import public_line_of

    if not key.exists():
        how = "set METAI_NODE_SUPERNODE_KEY to the right file, or " if custom else ""
        raise NodeConfigError(f"the SuperNode key {key} does not exist; {how}run `metai-node federation-key` to make "
                              "it, and send the public key it prints to the coordinator operator to register")
    public_line_of(key)


def _check_ca(ca: Path) -> None:
    from cryptography import x509

    if not ca.is_file():
        raise NodeConfigError(f"METAI_NODE_SUPERLINK_ROOT_CERTIFICATES is {ca}, which does not exist; point it at the "
                              "consortium CA certificate (PEM) the coordinator operator gives")
    try:
        x509.load_pem_x509_certificates(ca.read_bytes())
    except ValueError:
        raise NodeConfigError(f"METAI_NODE_SUPERLINK_ROOT_CERTIFICATES {ca} is not a PEM certificate; point it at "
                              "the consortium CA certificate (BEGIN CERTIFICATE ...)") from None


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the SuperNode's gRPC server binds: connections of a SuperNode killed a moment ago
        # linger in TIME_WAIT on the port for a minute, which a plain bind counts as taken.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
            probe.listen()
        except OSError as exc:
            raise NodeConfigError(f"the SuperNode's Runtime API cannot listen on {LOOPBACK}:{port} "
                                  f"({(exc.strerror or str(exc)).lower()}); another process has the port: set "
                                  "METAI_NODE_SUPERNODE_PORT to a free one") from None


@contextlib.contextmanager
def _stop_on_signals(stopping: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stopping`` (instead of ending the process) while the block runs."""
    def handler(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _health(port: int, report: Report) -> Iterator[HealthServer]:
    server = HealthServer(port, report)
    server.start()
    try:
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def _cleanup(supervisor: Supervisor, instance: str, checked: ServePlan, log: Any,
             log_files: dict[str, LogFile]) -> Iterator[None]:
    """On the way out, whatever happened: stop the children and whatever carries this instance's tag; remove the
    socket."""
    try:
        yield
    finally:
        supervisor.stop(STOP_TIMEOUT)
        if leftovers := stop_processes(tagged(instance), STOP_TIMEOUT):
            log.warning("stopped %d processes the children left behind", len(leftovers))
        shutil.rmtree(checked.signer_socket.parent, ignore_errors=True)
        log.info("serve stopped")
        for log_file in log_files.values():
            log_file.close()
