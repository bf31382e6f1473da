"""A federation for studies: one SuperLink and one SuperNode per hospital on 127.0.0.1, runs launched by study id.

:meth:`Federation.up` starts the SuperLink with the coordinator's settings in its environment
(its ServerApps inherit them), optionally makes the TLS and SuperNode-authentication material
and registers the SuperNodes' keys (``tls=True``), starts one SuperNode per hospital node
directory, and records everything in ``<run_dir>/federation.json`` so that a later process can
:meth:`Federation.load` it to launch runs or bring it down. Built on deploy/flower/; runs are
submitted and followed by the coordinator's code (:func:`coordinator.federated.superlink.run_app`),
the same the coordinator service launches studies with. See docs/federated.md.

Layout of ``run_dir``::

    federation.json                 what is running (read by Federation.load)
    security/                       CA, SuperLink certificate, SuperNode key pairs (tls only)
    superlink/                      superlink.log, superlink.db, flwr-home/runs/<run id>.log
    supernodes/supernode-<name>/    supernode.log, node-config.toml
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from coordinator.core.config import CoordinatorSettings
from coordinator.errors import CoordinatorConfigError
from coordinator.federated.flower_config import ConfigValue, read_app_config
from coordinator.federated.superlink import APP_DIR, CONNECTION, RunResult, run_app
from coordinator.run_config import RunConfigName
from deploy.errors import DeployError, SettingsError
from deploy.flower import (
    FlowerSecurity,
    SuperLinkProcess,
    SuperNodeProcess,
    load_process,
    make_security,
    register_supernodes,
    start_superlink,
    start_supernode,
    stop,
    write_federation_config,
)
from deploy.flower_certs import check_node_name
from deploy.process import start_time, tail
from deploy.settings import Settings
from deploy.signers import SignerProcess, start_signer, stop_signer
from deploy.threads import threads_per_node
from node.config import NodeInfo
from node.errors import NodeConfigError
from node.federated.supernode import supernode_node_config
from node.keys import KEY_FILE
from node.node_config import NodeConfigKey

_P = TypeVar("_P", SuperLinkProcess, SuperNodeProcess, SignerProcess)

__all__ = [
    "APP_DIR",
    "CONNECTION",
    "Federation",
    "FederationError",
    "Member",
    "NodeSpec",
    "NodeSpecError",
    "coordinator_env",
    "parse_node",
    "parse_overrides",
]

STATE_FILE = "federation.json"


class FederationError(DeployError, RuntimeError):
    """No federation is recorded where one was expected, one is already up, or a member is down."""


class NodeSpecError(DeployError, ValueError):
    """A hospital node cannot be run as a SuperNode: missing directory or passphrase file, bad or repeated name."""


@dataclass(frozen=True)
class NodeSpec:
    """A hospital node to run a SuperNode for.

    ``node_dir`` and ``passphrase_file`` reach the node's ClientApps as the node config keys
    ``node-dir`` and ``passphrase-file`` (absolute paths); without a passphrase file the
    ClientApp reads ``METAI_NODE_PASSPHRASE`` from the SuperNode's environment. ``name``
    overrides the SuperNode's name (see :meth:`supernode_name`).
    """

    node_dir: Path
    passphrase_file: Path | None = None
    name: str | None = None

    def supernode_name(self) -> str:
        """Return the SuperNode's name: ``name``, else the hospital address in ``node.json``, else the directory name.

        The address is read without the passphrase.
        """
        if self.name:
            return self.name
        try:
            return NodeInfo.load(self.node_dir).hospital_address
        except NodeConfigError:
            return self.node_dir.resolve().name

    def node_config(self) -> dict[str, ConfigValue]:
        """Return what the node's ClientApps see as ``context.node_config`` (as ``metai-node serve`` makes it)."""
        return dict(supernode_node_config(self.node_dir, passphrase_file=self.passphrase_file))

    def check(self) -> None:
        """Refuse a node directory or passphrase file that does not exist, or a name unfit for a SuperNode.

        Raises:
            NodeSpecError: naming the path or name and how to fix it.
        """
        if not self.node_dir.is_dir():
            raise NodeSpecError(f"node directory {self.node_dir} does not exist; give one `metai-node init` made")
        if self.passphrase_file is not None and not self.passphrase_file.is_file():
            raise NodeSpecError(
                f"passphrase file {self.passphrase_file} of node {self.node_dir} does not exist; "
                "write the node's passphrase there (one line, mode 0600)"
            )
        try:
            check_node_name(self.supernode_name())
        except ValueError as exc:
            raise NodeSpecError(f"node {self.node_dir}: {exc}") from None


@dataclass(frozen=True)
class Member:
    """One process of a federation, as :meth:`Federation.status` sees it."""

    role: str  # "superlink", "supernode" or "signer"
    name: str
    pid: int
    running: bool
    address: str  # the SuperLink's one port, or the SuperNode's Runtime API
    log_file: Path


@dataclass(frozen=True)
class Federation:
    """A running SuperLink with one SuperNode per hospital node; made by :meth:`up` or :meth:`load`.

    As a context manager it brings itself down on exit.
    """

    run_dir: Path
    superlink: SuperLinkProcess
    supernodes: tuple[SuperNodeProcess, ...]
    nodes: tuple[NodeSpec, ...]
    security: FlowerSecurity | None
    app_dir: Path = APP_DIR
    signers: tuple[SignerProcess, ...] = ()

    @property
    def tls(self) -> bool:
        """True when the SuperLink serves TLS and admits registered SuperNodes only."""
        return self.security is not None

    @classmethod
    def up(
        cls,
        run_dir: Path,
        nodes: Sequence[NodeSpec],
        *,
        tls: bool = False,
        coordinator_env: Mapping[str, str] | None = None,
        app_dir: Path = APP_DIR,
        port: int | None = None,
        timeout: float = 60.0,
        signers: bool = True,
        torch_threads: int | None = None,
    ) -> Federation:
        """Start a SuperLink and one SuperNode per node on 127.0.0.1, and record them in ``run_dir``.

        Parameters:
            run_dir: where everything goes (see the module docstring); a federation recorded
                there must be down. The SuperLink's state (``superlink.db``) starts afresh.
            nodes: the hospital nodes, at least one; their SuperNode names must differ.
            tls: serve TLS and admit only the SuperNodes whose keys are made and registered here.
            coordinator_env: added to the SuperLink's environment, where the ServerApp reads
                its settings (``METAI_COORDINATOR_*``; see :func:`coordinator_env`).
            app_dir: the Flower app that :meth:`launch` submits (default: this repository's).
            port: the SuperLink's port; a free one if None.
            timeout: seconds each process may take to start.
            signers: start a signing agent (node/signer.py) for each hospital node (a directory
                with ``node.json`` and the hospital key) given with a passphrase file, so that
                rounds do not unlock the hospital key in every ClientApp process.
            torch_threads: intra-op threads of torch in each node's ClientApps; None:
                ``METAI_TORCH_THREADS`` if set, else this machine's CPUs divided among the
                nodes (at least 1), so that the nodes do not oversubscribe the CPUs.

        Raises:
            NodeSpecError: no nodes, a node directory or passphrase file is missing, or two
                nodes have the same SuperNode name.
            FederationError: a federation recorded in ``run_dir`` is still running.
            ServiceStartError: the SuperLink or a SuperNode did not start (its log is quoted);
                whatever had started is stopped.
            FlowerRunError: the SuperLink refused to register a key.
        """
        if not nodes:
            raise NodeSpecError("no hospital nodes given; a federation needs at least one node directory")
        for node in nodes:
            node.check()
        names = [node.supernode_name() for node in nodes]
        if repeated := sorted({name for name in names if names.count(name) > 1}):
            dirs = [str(node.node_dir) for node, name in zip(nodes, names, strict=True) if name in repeated]
            raise NodeSpecError(f"nodes {dirs} share the SuperNode name(s) {repeated}; give each hospital its own node")
        _refuse_running(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / STATE_FILE).unlink(missing_ok=True)  # a record of one that is no longer running
        (run_dir / "superlink" / "superlink.db").unlink(missing_ok=True)  # runs and registrations of an earlier one
        if torch_threads is None:
            torch_threads = threads_per_node(len(nodes), configured=Settings().torch_threads)
        security = make_security(run_dir / "security", names) if tls else None
        signed = [(node, name) for node, name in zip(nodes, names, strict=True)
                  if signers and node.passphrase_file is not None and _holds_hospital_key(node.node_dir)]
        # The signing agents (each unlocks its key) start while the SuperLink does, and the SuperNodes
        # start side by side once it answers: each mostly waits for its process to come up.
        started = _Started()
        with ThreadPoolExecutor(max_workers=len(nodes) + 1, thread_name_prefix="federation-up") as pool:
            try:
                agent_calls = [started.call(start_signer, node.node_dir, node.passphrase_file,
                                            run_dir / "signers" / f"signer-{name}.log", name, timeout)
                               for node, name in signed]
                link_call = started.call(start_superlink, run_dir / "superlink", security=security, port=port,
                                         timeout=timeout, extra_env=coordinator_env)
                agent_futures = [pool.submit(call) for call in agent_calls]
                link_future = pool.submit(link_call)
                agents: dict[str, SignerProcess] = {agent.name: agent for agent in _gathered(agent_futures)}
                superlink = _gathered([link_future])[0]
                if security is not None:
                    register_supernodes(superlink, security, names, superlink.flwr_home)
                supernode_calls = [
                    started.call(start_supernode, run_dir / "supernodes", superlink, name,
                                 node_config={**node.node_config(),
                                              **({NodeConfigKey.SIGNER_SOCKET: str(agents[name].socket)}
                                                 if name in agents else {})},
                                 security=security, timeout=timeout, torch_threads=torch_threads)
                    for node, name in zip(nodes, names, strict=True)]
                supernodes = _gathered([pool.submit(call) for call in supernode_calls])
                write_federation_config(superlink.flwr_home, CONNECTION, superlink, security)
                federation = cls(run_dir, superlink, tuple(supernodes), tuple(nodes), security, app_dir,
                                 tuple(agents.values()))
                federation._save()
            except BaseException:  # failed or interrupted: leave nothing running, once every start has ended
                pool.shutdown(wait=True, cancel_futures=True)
                started.stop_all()
                raise
        return federation

    @classmethod
    def load(cls, run_dir: Path) -> Federation:
        """Return the federation recorded in ``run_dir`` by :meth:`up`.

        Raises:
            FederationError: none is recorded there.
        """
        state_file = run_dir / STATE_FILE
        if not state_file.exists():
            raise FederationError(
                f"no federation is recorded in {run_dir} (no {STATE_FILE}); "
                "start one with `python -m deploy federation up`"
            )
        data = json.loads(state_file.read_text(encoding="utf-8"))
        superlink = load_process(Path(data["superlink"]))
        supernodes = [load_process(Path(path)) for path in data["supernodes"]]
        if not isinstance(superlink, SuperLinkProcess):
            raise FederationError(f"{state_file}: {data['superlink']} is not a SuperLink's record")
        for record, supernode in zip(data["supernodes"], supernodes, strict=True):
            if not isinstance(supernode, SuperNodeProcess):
                raise FederationError(f"{state_file}: {record} is not a SuperNode's record")
        nodes = tuple(
            NodeSpec(Path(n["node_dir"]), Path(n["passphrase_file"]) if n["passphrase_file"] else None, n["name"])
            for n in data["nodes"]
        )
        security = None
        if (sec := data["security"]) is not None:
            keys = {name: (Path(private), Path(public)) for name, (private, public) in sec["supernode_keys"].items()}
            security = FlowerSecurity(Path(sec["ca_cert"]), Path(sec["server_cert"]), Path(sec["server_key"]), keys)
        members = tuple(n for n in supernodes if isinstance(n, SuperNodeProcess))
        agents = tuple(SignerProcess.from_json(text) for text in data.get("signers", []))
        return cls(run_dir, superlink, members, nodes, security, Path(data["app_dir"]), agents)

    def launch(
        self,
        study_id: int,
        run_config: Mapping[str, ConfigValue] | None = None,
        *,
        timeout: float = 3600.0,
        on_submitted: Callable[[int], None] | None = None,
        on_log: Callable[[str], None] | None = None,
    ) -> RunResult:
        """Run the app for study ``study_id`` (``study-id`` in the run config) and follow it to its end.

        Parameters:
            study_id: the study on chain; it must be RUNNING for the ServerApp to train it.
            run_config: other overrides of ``[tool.flwr.app.config]``.
            timeout: seconds from submission to the end of the run; after it the run is stopped.
            on_submitted, on_log: see :func:`coordinator.federated.superlink.run_app`.

        Raises:
            ValueError: ``study_id`` is not a positive integer, ``run_config`` names another
                study, or a key is not in the app's config.
            FederationError: a member of the federation is not running (its log is quoted).
            FlowerRunError: the run was refused, failed, or ran out of time (its log is quoted).
        """
        if isinstance(study_id, bool) or not isinstance(study_id, int) or study_id < 1:
            raise ValueError(f"study id {study_id!r} is not a positive integer; give the id the chain assigned")
        overrides = dict(run_config or {})
        if overrides.get(RunConfigName.STUDY_ID, study_id) != study_id:
            raise ValueError(f"run_config names study {overrides[RunConfigName.STUDY_ID]!r} but the launch is for "
                             f"study {study_id}")
        for member in self.status():
            if not member.running:
                raise FederationError(
                    f"{member.role} {member.name} (pid {member.pid}) is not running; bring the federation down and up "
                    f"again. Its log, {member.log_file}:\n{tail(member.log_file)}"
                )
        return run_app(
            self.app_dir,
            flwr_home=self.superlink.flwr_home,
            federation=CONNECTION,
            run_config={**overrides, RunConfigName.STUDY_ID: study_id},
            timeout=timeout,
            on_submitted=on_submitted,
            on_log=on_log,
        )

    def status(self) -> list[Member]:
        """Return the SuperLink and each SuperNode with whether it is still running."""
        link = self.superlink
        members = [Member("superlink", "superlink", link.pid, _running(link), link.control_address, link.log_file)]
        members += [
            Member("supernode", n.name, n.pid, _running(n), n.clientappio_address, n.log_file) for n in self.supernodes
        ]
        members += [Member("signer", a.name, a.pid, a.running(), str(a.socket), a.log_file) for a in self.signers]
        return members

    def run_log(self, run_id: int) -> Path:
        """Return where the ServerApp log of run ``run_id`` is written."""
        return self.superlink.flwr_home / "runs" / f"{run_id}.log"

    def down(self) -> None:
        """Stop the SuperNodes, then the SuperLink, and forget the federation; doing it twice is harmless."""
        for node in reversed(self.supernodes):
            stop(node)
        for agent in self.signers:
            stop_signer(agent)
        stop(self.superlink)
        (self.run_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> Federation:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    def _save(self) -> None:
        security = None
        if self.security is not None:
            security = {
                "ca_cert": str(self.security.ca_cert),
                "server_cert": str(self.security.server_cert),
                "server_key": str(self.security.server_key),
                "supernode_keys": {n: [str(k), str(p)] for n, (k, p) in self.security.supernode_keys.items()},
            }
        data = {
            "app_dir": str(self.app_dir),
            "superlink": str(self.superlink.log_file.parent / "superlink.json"),
            "supernodes": [str(n.log_file.parent / "supernode.json") for n in self.supernodes],
            "nodes": [
                {
                    "node_dir": str(n.node_dir),
                    "passphrase_file": str(n.passphrase_file) if n.passphrase_file else None,
                    "name": name,
                }
                for n, name in zip(self.nodes, (s.name for s in self.supernodes), strict=True)
            ],
            "security": security,
            "signers": [a.to_json() for a in self.signers],
        }
        (self.run_dir / STATE_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def coordinator_env(settings: CoordinatorSettings | None = None) -> dict[str, str]:
    """Return the coordinator's settings as ``METAI_COORDINATOR_*`` variables for the SuperLink's environment.

    Parameters:
        settings: the coordinator's settings; None: read them from this process's environment
            and ``.env``. Paths are made absolute (the ServerApp may run
            in another directory); unset values are left out.

    Raises:
        SettingsError: the RPC URL or passphrase is unset, or the manifest or key file does not exist.
    """
    if settings is None:
        settings = CoordinatorSettings()
    try:
        settings.require()
    except CoordinatorConfigError as exc:
        raise SettingsError(str(exc)) from None
    for what, path in (("MANIFEST", settings.manifest), ("KEY_FILE", settings.key_file)):
        if not path.is_file():
            raise SettingsError(f"METAI_COORDINATOR_{what} is {path}, which does not exist; point it at the file")
    return settings.as_env()


def parse_node(text: str) -> NodeSpec:
    """Parse a ``DIR`` or ``DIR=PASSPHRASE_FILE`` command-line value (split at the first ``=``).

    Raises:
        NodeSpecError: the value is empty.
    """
    node_dir, _, passphrase_file = text.partition("=")
    if not node_dir:
        raise NodeSpecError(f"--node {text!r} names no directory; give DIR or DIR=PASSPHRASE_FILE")
    return NodeSpec(Path(node_dir), Path(passphrase_file) if passphrase_file else None)


def parse_overrides(app_dir: Path, items: Iterable[str]) -> dict[str, ConfigValue]:
    """Parse ``key=value`` command-line overrides, typed like the defaults in ``[tool.flwr.app.config]``.

    Raises:
        ValueError: an item is not ``key=value``, the key is not in the app's config (or is
            ``study-id``, which has its own option), or the value does not fit the default's type.
    """
    defaults = read_app_config(app_dir)
    overrides: dict[str, ConfigValue] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--set {item!r} is not key=value")
        if key == RunConfigName.STUDY_ID:
            raise ValueError("give the study with --study-id, not --set study-id=...")
        if key not in defaults:
            raise ValueError(f"--set {key}: no such key in [tool.flwr.app.config] (known: {sorted(defaults)})")
        overrides[key] = _typed(key, text, defaults[key])
    return overrides


def _typed(key: str, text: str, default: ConfigValue) -> ConfigValue:
    kind = type(default)
    if kind is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"--set {key}={text}: {key} is true or false")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"--set {key}={text}: {key} is a number ({kind.__name__}, default {default})") from None
    return text


class _Started:
    """What :meth:`Federation.up` has started, from any of its threads, so that a failure stops all of it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._processes: list[SuperLinkProcess | SuperNodeProcess | SignerProcess] = []

    def call(self, start: Callable[..., _P], *args: Any, **kwargs: Any) -> Callable[[], _P]:
        """``start(*args, **kwargs)`` as a call that records the process it starts."""
        def run() -> _P:
            process = start(*args, **kwargs)
            with self._lock:
                self._processes.append(process)
            return process
        return run

    def stop_all(self) -> None:
        """Stop what was started, the latest first."""
        with self._lock:
            processes, self._processes = self._processes[::-1], []
        for process in processes:
            if isinstance(process, SignerProcess):
                stop_signer(process)
            else:
                stop(process)


def _gathered(futures: Sequence[Future[_P]]) -> list[_P]:
    """The results of ``futures`` in order, once all have ended.

    Raises:
        BaseException: the first failure, in the order of ``futures``.
    """
    wait(futures)
    for future in futures:
        if (error := future.exception()) is not None:
            raise error
    return [future.result() for future in futures]


def _holds_hospital_key(node_dir: Path) -> bool:
    return (node_dir / "node.json").is_file() and (node_dir / KEY_FILE).is_file()


def _running(process: SuperLinkProcess | SuperNodeProcess) -> bool:
    return process.start_time is not None and start_time(process.pid) == process.start_time


def _refuse_running(run_dir: Path) -> None:
    try:
        earlier = Federation.load(run_dir)
    except FederationError:
        return
    except (OSError, ValueError, KeyError, TypeError):  # unreadable leftovers of a crash: nothing we can stop
        return
    if running := [m for m in earlier.status() if m.running]:
        raise FederationError(
            f"a federation is already up in {run_dir} ({running[0].role} pid {running[0].pid}); launch runs on it "
            "with `python -m deploy study launch`, or bring it down with `python -m deploy federation down`"
        )
