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
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue

import requests

from deploy.errors import DeployError, ServiceStartError, ToolMissing
from deploy.flower_certs import FlowerSecurity, check_node_name, make_security
from deploy.process import HOST, clean, descendants, free_port, read_log, spawn, start_time, stop_tree, tail, tail_text
from deploy.threads import thread_env

__all__ = [
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

ConfigValue = str | int | float | bool
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_CONFIG_KEY = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")


class FlowerRunError(DeployError, RuntimeError):
    """A Flower run could not start, failed, or did not finish in time; the message quotes its log."""

    def __init__(self, message: str, *, run_id: int | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


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


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id, final status (``finished:completed`` on success) and ServerApp log."""

    run_id: int
    status: str
    logs: str  # what the ServerApp logged and printed (ClientApps print into their SuperNode's log)
    log_file: Path  # the same, kept as ``<flwr_home>/runs/<run_id>.log``
    seconds: float  # from submission to the end of the log stream
    details: str = ""


def flower_env(run_dir: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for Flower processes whose FLWR_HOME is ``run_dir / "flwr-home"``.

    It is this process's environment, plus ``extra_env``, plus the Flower settings of
    docs/flower.md (which ``extra_env`` cannot override, except the SuperExec poll interval).
    """
    return _env(run_dir / "flwr-home", extra_env)


def _env(flwr_home: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)  # passed through whole: children need PATH, HOME, locale
    env.update(extra_env or {})
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), HOST, "localhost") if p)
    env.update(
        FLWR_HOME=str(flwr_home.resolve()),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",  # else each process POSTs to flower.ai first
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        # SuperExec waits this long between asks for a task (Flower's default 1 s), per round. Each ask
        # costs CPU in SuperExec and in the SuperLink / SuperNode it asks: measured on 2 cores, an idle
        # SuperLink with its SuperExec used 9.8 % of a core at 0.1 s, 2.6 % at 0.5 s (docs/flower.md).
        FLWR_SUPEREXEC_TASK_POLL_INTERVAL=env.get("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.5"),
        PATH=os.pathsep.join([str(_bin_dir()), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
    )
    return env


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
        ToolMissing: flwr is not installed in this venv.
        ServiceStartError: it exited or did not answer in time (its log is quoted).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    database = run_dir / "superlink.db"
    cmd = [str(_tool("flower-superlink")), "--host", HOST, "--port", str(port), "--database", str(database)]
    cmd += ["--isolation", "subprocess", "--disable-runtime-dependency-installation"]
    if security is None:
        cmd += ["--insecure"]
    else:
        cmd += ["--ssl-ca-certfile", str(security.ca_cert), "--ssl-certfile", str(security.server_cert)]
        cmd += ["--ssl-keyfile", str(security.server_key), "--enable-supernode-auth"]
    log_file = run_dir / "superlink.log"
    proc = spawn(cmd, log_file, env=flower_env(run_dir, extra_env))
    url = f"{'http' if security is None else 'https'}://{HOST}:{port}/health"
    deadline = time.monotonic() + timeout
    try:
        while not _healthy(url, str(security.ca_cert) if security else False):
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


def write_federation_config(
    flwr_home: Path,
    name: str,
    superlink: SuperLinkProcess,
    security: FlowerSecurity | None,
    *,
    make_default: bool = True,
) -> None:
    """Add (or replace) SuperLink connection ``name`` in ``flwr_home/config.toml``.

    ``flwr run <app> <name>`` (and ``flwr ls``, ``flwr log``, ...) then talk to ``superlink``'s
    Control API. Other connections are kept; Flower's stock entries are not added (its ``local``
    connection would start a SuperLink of its own, ``supergrid`` is online).

    Raises:
        ValueError: ``name`` is not a bare TOML key, or ``security`` does not match how the
            SuperLink was started.
    """
    if not _BARE_KEY.match(name) or name == "default":
        raise ValueError(f"connection name {name!r} must be letters, digits, '_' or '-' (and not 'default')")
    _check_security(superlink, security)
    config_file = flwr_home / "config.toml"
    config = tomllib.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    connections = config.setdefault("superlink", {})
    entry: dict[str, object] = {"address": superlink.control_address}
    if security is None:
        entry["insecure"] = True
    else:
        entry["root-certificates"] = str(security.ca_cert.resolve())
    connections[name] = entry
    if make_default or "default" not in connections:
        connections["default"] = name
    flwr_home.mkdir(parents=True, exist_ok=True)
    config_file.write_text(_toml(config), encoding="utf-8")


def register_supernodes(
    superlink: SuperLinkProcess, security: FlowerSecurity, names: Sequence[str], flwr_home: Path
) -> None:
    """Register the public keys of SuperNodes ``names`` with ``superlink`` (``flwr supernode register``).

    Only registered keys may connect to a SuperLink started with ``security``. The CLI talks to
    the Control API through a connection named ``registration`` in ``flwr_home/config.toml``.

    Raises:
        KeyError: a name has no key pair in ``security``.
        ValueError: ``superlink`` was started without TLS.
        FlowerRunError: the SuperLink refused a key (the CLI's output is quoted).
    """
    keys = [security.keys_of(name) for name in names]
    if superlink.ca_cert is None:
        raise ValueError("the SuperLink runs without TLS, which admits any SuperNode: start it with security=")
    write_federation_config(flwr_home, "registration", superlink, security, make_default=False)
    for name, (_, public_key) in zip(names, keys, strict=True):
        cmd = ["supernode", "register", str(public_key), "registration", "--name", name, "--format", "json"]
        out = _flwr(cmd, flwr_home, what=f"registering SuperNode {name!r}")
        if not out.get("success") or not out.get("node-id"):
            raise FlowerRunError(f"registering SuperNode {name!r} failed: {out}")


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

    Raises:
        ValueError: a node_config key or value cannot be passed, or ``security`` does not
            match the SuperLink; ``torch_threads`` < 1.
        KeyError: ``security`` has no key pair for ``name``.
        ServiceStartError: it exited (e.g. exit code 305 when the SuperLink refuses an
            unregistered key) or was not activated in time; its log is quoted.
    """
    check_node_name(name)
    _check_security(superlink, security)
    node_dir = run_dir / f"supernode-{name}"
    node_dir.mkdir(parents=True, exist_ok=True)
    config_file = node_dir / "node-config.toml"  # a file: values may hold spaces and quotes
    config_file.write_text(_toml(dict(_checked_config(node_config, "node_config"))), encoding="utf-8")
    port = port or free_port()
    cmd = [str(_tool("flower-supernode")), "--superlink", superlink.fleet_address, "--host", HOST, "--port", str(port)]
    cmd += ["--isolation", "subprocess", "--node-config", str(config_file)]
    if security is None:
        cmd += ["--insecure"]
    else:
        private_key, _ = security.keys_of(name)
        cmd += ["--root-certificates", str(security.ca_cert), "--auth-supernode-private-key", str(private_key)]
    log_file = node_dir / "supernode.log"
    log_start = log_file.stat().st_size if log_file.exists() else 0
    env = {**(thread_env(torch_threads) if torch_threads is not None else {}), **(extra_env or {})}
    proc = spawn(cmd, log_file, env=flower_env(node_dir, env))
    deadline = time.monotonic() + timeout
    try:
        while not (found := _NODE_ID.search(read_log(log_file, log_start))):
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
    )
    _save(node, node_dir / "supernode.json")
    return node


def run_app(
    app_dir: Path,
    *,
    flwr_home: Path,
    federation: str,
    run_config: Mapping[str, ConfigValue],
    timeout: float,
    on_submitted: Callable[[int], None] | None = None,
    on_log: Callable[[str], None] | None = None,
) -> RunResult:
    """Submit the Flower app in ``app_dir`` with ``flwr run``, follow it to the end, and return how it ended.

    Parameters:
        app_dir: the app (its ``pyproject.toml`` has ``[tool.flwr.app]``).
        flwr_home: the FLWR_HOME whose ``config.toml`` names the SuperLink connection.
        federation: that connection's name (as given to :func:`write_federation_config`).
        run_config: overrides of ``[tool.flwr.app.config]`` (each key must exist there); both
            the ServerApp and every ClientApp see the merged result as ``context.run_config``.
        timeout: seconds from submission to the end of the run; after it the run is stopped.
        on_submitted: called with the run id once the SuperLink has accepted the run.
        on_log: called with each line of the ServerApp's log (no newline) as it arrives; the
            lines also go to ``<flwr_home>/runs/<run id>.log`` as they arrive.

    If the caller is interrupted (Ctrl-C) while the run is followed, the run is stopped
    (``flwr stop``) before the interruption goes on.

    Raises:
        ValueError: a run_config key is not in the app's ``[tool.flwr.app.config]``, or a value
            cannot be passed.
        FlowerRunError: the submission was refused, the run ended other than
            ``finished:completed``, or it ran out of time (the log tail is quoted).
    """
    _check_run_config_keys(app_dir, run_config)
    started = time.monotonic()
    runs = flwr_home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # A file, not key=value words: string values may hold spaces and quotes.
    overrides = runs / f"pending-{uuid.uuid4().hex}.run-config.toml"
    overrides.write_text(_toml(dict(_checked_config(run_config, "run_config"))), encoding="utf-8")
    cmd = ["run", str(app_dir.resolve()), federation, "--run-config", str(overrides), "--format", "json"]
    try:
        out = _flwr(cmd, flwr_home, what=f"submitting {app_dir}")
        if not out.get("success") or out.get("run-id") is None:
            raise FlowerRunError(f"flwr run did not start {app_dir}: {out.get('error-message', out)}")
    except FlowerRunError:
        overrides.unlink(missing_ok=True)
        raise
    run_id = int(str(out["run-id"]))
    overrides.replace(runs / f"{run_id}.run-config.toml")
    log_file = runs / f"{run_id}.log"
    remaining = max(1.0, timeout - (time.monotonic() - started))
    try:
        if on_submitted is not None:
            on_submitted(run_id)
        logs, returncode, errors = _follow(run_id, federation, flwr_home, log_file, remaining, on_log)
    except BaseException:  # interrupted: the run would go on without anyone following it
        _stop_run(run_id, federation, flwr_home)
        raise
    if returncode is None:
        _stop_run(run_id, federation, flwr_home)
        raise FlowerRunError(
            f"run {run_id} did not finish within {timeout} s and was stopped; log tail:\n{tail_text(logs)}",
            run_id=run_id,
            status="timeout",
        )
    if returncode != 0:  # the status below says how the run ended; this says why we could not follow it
        logs += f"\n(flwr log exited with {returncode}: {tail_text(errors, 5)})"
    status, details = _run_status(run_id, federation, flwr_home)
    if status != "finished:completed":
        raise FlowerRunError(
            f"run {run_id} ended {status} ({details}); log tail:\n{tail_text(logs)}", run_id=run_id, status=status
        )
    return RunResult(run_id, status, logs, log_file, time.monotonic() - started, details)


def read_app_config(app_dir: Path) -> dict[str, ConfigValue]:
    """Return the defaults of the app's ``[tool.flwr.app.config]``, nested keys joined with dots.

    Raises:
        ValueError: ``app_dir/pyproject.toml`` cannot be read or parsed.
    """
    try:
        project = tomllib.loads((app_dir / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{app_dir} is not a Flower app: its pyproject.toml cannot be read ({exc})") from None
    return _flat(project.get("tool", {}).get("flwr", {}).get("app", {}).get("config", {}))


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


# ---------------------------------------------------------------------- helpers


def _save(process: SuperLinkProcess | SuperNodeProcess, path: Path) -> None:
    data = {key: str(value) if isinstance(value, Path) else value for key, value in vars(process).items()}
    data["kind"] = "superlink" if isinstance(process, SuperLinkProcess) else "supernode"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _bin_dir() -> Path:
    return Path(sys.executable).parent


def _tool(name: str) -> Path:
    path = _bin_dir() / name
    if not path.exists():
        raise ToolMissing(f"{name} not found in {_bin_dir()}: install flwr==1.41.0 in this venv (make deps does it)")
    return path


def _check_alive(proc: subprocess.Popen[bytes], what: str, log_file: Path, deadline: float, timeout: float) -> None:
    if proc.poll() is not None:
        raise ServiceStartError(f"{what} exited with {proc.returncode}:\n{tail(log_file)}")
    if time.monotonic() > deadline:
        raise ServiceStartError(f"{what} was not ready within {timeout} s:\n{tail(log_file)}")


def _healthy(url: str, verify: str | bool) -> bool:
    with requests.Session() as session:
        session.trust_env = False  # loopback: never through an HTTP(S)_PROXY
        try:
            return session.get(url, timeout=2, verify=verify).status_code == 200
        except requests.RequestException:
            return False


def _check_security(superlink: SuperLinkProcess, security: FlowerSecurity | None) -> None:
    if (superlink.ca_cert is None) != (security is None):
        state = "without" if superlink.ca_cert is None else "with"
        raise ValueError(f"the SuperLink was started {state} TLS; pass the same security= it was started with")


def _flwr(args: list[str], flwr_home: Path, *, what: str, timeout: float = 120) -> dict[str, object]:
    """Run one ``flwr ... --format json`` command and return its JSON answer."""
    done = subprocess.run(
        [str(_tool("flwr")), *args],
        env=_env(flwr_home),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        answer = None
    if done.returncode != 0 or not isinstance(answer, dict):
        output = tail_text(clean(done.stdout + done.stderr))
        raise FlowerRunError(f"{what}: `flwr {' '.join(args)}` exited with {done.returncode}:\n{output}")
    return answer


def _run_status(run_id: int, federation: str, flwr_home: Path) -> tuple[str, str]:
    status = "unknown"
    for _ in range(50):  # the stream ends as the run finishes; the status may trail by a moment
        out = _flwr(["ls", federation, "--run-id", str(run_id), "--format", "json"], flwr_home, what="reading status")
        runs = out.get("runs")
        run = runs[0] if isinstance(runs, list) and runs else {}
        status = str(run.get("status", "unknown"))
        if status.startswith("finished"):
            return status, str(run.get("status-details", ""))
        time.sleep(0.2)
    return status, "still not finished after its log stream ended"


def _checked_config(config: Mapping[str, ConfigValue], what: str) -> Mapping[str, ConfigValue]:
    for key, value in config.items():
        if not _CONFIG_KEY.match(key):
            raise ValueError(f"{what} key {key!r} must be letters, digits, '_' or '-' (dots nest)")
        if not isinstance(value, str | int | float | bool):
            raise ValueError(f"{what}[{key!r}] is {type(value).__name__}, expected str, int, float or bool")
        if isinstance(value, str) and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise ValueError(f"{what}[{key!r}] holds a control character; Flower configs take one-line text")
    return config


def _check_run_config_keys(app_dir: Path, run_config: Mapping[str, ConfigValue]) -> None:
    # Flower refuses unknown keys with a bare "Invalid run configuration"; name them here instead.
    known = set(read_app_config(app_dir))
    if unknown := sorted(set(run_config) - known):
        raise ValueError(
            f"run_config keys {unknown} are not in [tool.flwr.app.config] of {app_dir / 'pyproject.toml'} "
            f"(known: {sorted(known)}); add them there first"
        )


def _flat(table: Mapping[str, object], prefix: str = "") -> dict[str, ConfigValue]:
    flat: dict[str, ConfigValue] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flat(value, f"{prefix}{key}."))
        elif isinstance(value, str | int | float | bool):
            flat[prefix + key] = value
    return flat


def _follow(
    run_id: int,
    federation: str,
    flwr_home: Path,
    log_file: Path,
    timeout: float,
    on_log: Callable[[str], None] | None,
) -> tuple[str, int | None, str]:
    """Stream the run's log (``flwr log --stream``, which ends with the run) into ``log_file`` and ``on_log``.

    Returns the log, the exit code of ``flwr log`` (None: ``timeout`` ran out first) and its stderr.
    """
    lines: Queue[str | None] = Queue()
    with tempfile.TemporaryFile() as errors, open(log_file, "w", encoding="utf-8") as out:
        stream = subprocess.Popen(
            [str(_tool("flwr")), "log", str(run_id), federation, "--stream"],
            env=_env(flwr_home),
            stdout=subprocess.PIPE,
            stderr=errors,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        pipe = stream.stdout
        assert pipe is not None  # stdout=PIPE

        def pump() -> None:  # a thread, so the wait below can time out between lines
            for line in pipe:
                lines.put(line)
            lines.put(None)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        text: list[str] = []
        deadline = time.monotonic() + timeout
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    line = lines.get(timeout=min(left, 1.0))
                except Empty:
                    continue
                if line is None:
                    break
                text.append(line := clean(line))
                out.write(line)
                out.flush()
                if on_log is not None:
                    on_log(line.rstrip("\n"))
            else:
                return "".join(text), None, ""
        finally:
            if stream.poll() is None:
                stream.kill()
            stream.wait()
            reader.join(timeout=5)  # it reads to the end of the pipe, which closed with the process
            if not reader.is_alive():
                pipe.close()
        errors.seek(0)
        return "".join(text), stream.returncode, clean(errors.read())


def _stop_run(run_id: int, federation: str, flwr_home: Path) -> None:
    with contextlib.suppress(DeployError, subprocess.SubprocessError):
        _flwr(["stop", str(run_id), federation, "--format", "json"], flwr_home, what=f"stopping run {run_id}")


def _toml(table: Mapping[str, object], prefix: str = "") -> str:
    """Write a TOML document of tables, strings, numbers, booleans and lists (all a Flower config holds)."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    text = ("\n".join(lines) + "\n") if lines else ""
    for key, sub in table.items():
        if isinstance(sub, Mapping):
            name = f"{prefix}.{_key(key)}" if prefix else _key(key)
            text += f"\n[{name}]\n" + _toml(sub, name)
    return text


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string once control chars are refused
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise ValueError(f"cannot write {type(value).__name__} {value!r} to TOML")
