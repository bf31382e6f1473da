"""Runs on a SuperLink: the connection, submitting a run, following it to its end.

A SuperLink's Control API is reached through a named connection in ``$FLWR_HOME/config.toml``
(:func:`write_connection`), which the ``flwr`` CLI reads too. :func:`submit_run` submits an app
with ``flwr run`` (which packs the app into a FAB) and its run-config overrides;
:func:`follow_run` streams the ServerApp's log (which ends with the run) and reads how it ended,
with calls to the Control API from this process (:mod:`.superlink_runs`: what ``flwr log
--stream`` and ``flwr ls`` do, without starting a ``flwr`` process, which costs about 1.2 s of
CPU each); :func:`run_app` does both. The coordinator service launches studies with these
(:mod:`coordinator.federated.launches`); ``deploy`` uses them on the SuperLinks it starts.
See docs/flower.md.
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

from coordinator.errors import CoordinatorError
from coordinator.federated.app_source import stage_app
from coordinator.federated.control import ControlClient, ControlError, ControlUnavailable
from coordinator.federated.flower_config import ConfigValue, check_run_config_keys, checked_config, toml_text
from coordinator.federated.superlink_runs import log_lines, run_status, stop_link_run

__all__ = [
    "APP_DIR",
    "CONNECTION",
    "FlowerMissing",
    "FlowerRunError",
    "RunDetached",
    "RunResult",
    "SubmittedRun",
    "SuperLinkConnection",
    "bin_dir",
    "clean",
    "flwr",
    "flwr_env",
    "follow_run",
    "read_connection",
    "run_app",
    "submit_run",
    "tail_text",
    "tool",
    "write_connection",
]

#: The repository: its pyproject.toml declares the Flower app (``[tool.flwr.app]``) the coordinator runs.
APP_DIR = Path(__file__).resolve().parents[2]
#: The name of the SuperLink connection the coordinator's runs use in their FLWR_HOME.
CONNECTION = "metai"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOOPBACK = ("127.0.0.1", "localhost")


class FlowerRunError(CoordinatorError, RuntimeError):
    """A Flower run could not start, failed, or did not finish in time; the message quotes its log."""

    def __init__(self, message: str, *, run_id: int | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


class RunDetached(FlowerRunError):
    """The caller stopped following a run; the run itself goes on on the SuperLink."""


class FlowerMissing(CoordinatorError, FileNotFoundError):
    """A Flower command is not installed in this venv."""


@dataclass(frozen=True)
class SuperLinkConnection:
    """How the flwr CLI reaches a SuperLink's Control API."""

    address: str  # host:port of the SuperLink's one port (Fleet, Control and Runtime APIs in Flower 1.41)
    root_certificates: Path | None  # CA certificate (PEM) of its TLS certificate; None: plain HTTP


@dataclass(frozen=True)
class SubmittedRun:
    """A run the SuperLink accepted: its id, where its ServerApp log goes, when the submission began."""

    run_id: int
    log_file: Path  # ``<flwr_home>/runs/<run_id>.log``, written by :func:`follow_run`
    started: float  # time.monotonic() before the submission


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id, final status (``finished:completed`` on success) and ServerApp log."""

    run_id: int
    status: str
    logs: str  # what the ServerApp logged and printed (ClientApps print into their SuperNode's log)
    log_file: Path  # the same, kept as ``<flwr_home>/runs/<run_id>.log``
    seconds: float  # from submission to the end of the log stream
    details: str = ""


def write_connection(flwr_home: Path, name: str, connection: SuperLinkConnection, *, make_default: bool = True) -> None:
    """Add (or replace) SuperLink connection ``name`` in ``flwr_home/config.toml``.

    ``flwr run <app> <name>`` (and ``flwr ls``, ``flwr log``, ...) then talk to the SuperLink's
    Control API at ``connection.address``. Other connections are kept; Flower's stock entries
    are not added (its ``local`` connection would start a SuperLink of its own, ``supergrid`` is
    online).

    Raises:
        ValueError: ``name`` is not a bare TOML key.
    """
    if not _BARE_KEY.match(name) or name == "default":
        raise ValueError(f"connection name {name!r} must be letters, digits, '_' or '-' (and not 'default')")
    config_file = flwr_home / "config.toml"
    config = tomllib.loads(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    connections = config.setdefault("superlink", {})
    entry: dict[str, object] = {"address": connection.address}
    if connection.root_certificates is None:
        entry["insecure"] = True
    else:
        entry["root-certificates"] = str(connection.root_certificates.resolve())
    connections[name] = entry
    if make_default or "default" not in connections:
        connections["default"] = name
    flwr_home.mkdir(parents=True, exist_ok=True)
    config_file.write_text(toml_text(config), encoding="utf-8")


def read_connection(flwr_home: Path, name: str) -> SuperLinkConnection:
    """The SuperLink connection ``name`` of ``flwr_home/config.toml`` (as :func:`write_connection` wrote it).

    Raises:
        FlowerRunError: there is no such connection, or it names no address.
    """
    config_file = flwr_home / "config.toml"
    try:
        config = tomllib.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FlowerRunError(f"the SuperLink connections in {config_file} cannot be read ({exc})") from None
    entry = config.get("superlink", {}).get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
        raise FlowerRunError(f"{config_file} has no SuperLink connection {name!r} with an address")
    root = entry.get("root-certificates")
    return SuperLinkConnection(entry["address"], None if entry.get("insecure") is True or root is None else Path(root))


def _control(flwr_home: Path, federation: str) -> ControlClient:
    connection = read_connection(flwr_home, federation)
    try:
        return ControlClient(connection.address, connection.root_certificates)
    except ControlUnavailable as exc:
        raise FlowerRunError(str(exc)) from None


def submit_run(
    app_dir: Path, *, flwr_home: Path, federation: str, run_config: Mapping[str, ConfigValue]
) -> SubmittedRun:
    """Submit the Flower app in ``app_dir`` with ``flwr run``; return once the SuperLink has accepted it.

    Parameters:
        app_dir: the app (its ``pyproject.toml`` has ``[tool.flwr.app]``).
        flwr_home: the FLWR_HOME whose ``config.toml`` names the SuperLink connection.
        federation: that connection's name (as given to :func:`write_connection`).
        run_config: overrides of ``[tool.flwr.app.config]`` (each key must exist there), written
            to ``<flwr_home>/runs/<run id>.run-config.toml``.

    Raises:
        ValueError: a run_config key is not in the app's ``[tool.flwr.app.config]``, or a value
            cannot be passed.
        FlowerRunError: the SuperLink cannot be reached or refused the run (the CLI's answer is quoted).
        OSError: the app's packages cannot be copied aside for packing (see :mod:`.app_source`).
    """
    check_run_config_keys(app_dir, run_config)
    started = time.monotonic()
    runs = flwr_home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # A file, not key=value words: string values may hold spaces and quotes.
    overrides = runs / f"pending-{uuid.uuid4().hex}.run-config.toml"
    overrides.write_text(toml_text(dict(checked_config(run_config, "run_config"))), encoding="utf-8")
    try:
        # flwr run packs a copy of the app's packages: walking the checkout (venv included) took seconds
        with tempfile.TemporaryDirectory(prefix="app-source-", dir=flwr_home) as staging:
            source = stage_app(app_dir.resolve(), Path(staging))
            cmd = ["run", str(source), federation, "--run-config", str(overrides), "--format", "json"]
            out = flwr(cmd, flwr_home, what=f"submitting {app_dir}")
        if not out.get("success") or out.get("run-id") is None:
            raise FlowerRunError(f"flwr run did not start {app_dir}: {out.get('error-message', out)}")
    except (FlowerRunError, ValueError, OSError):
        overrides.unlink(missing_ok=True)
        raise
    run_id = int(str(out["run-id"]))
    overrides.replace(runs / f"{run_id}.run-config.toml")
    return SubmittedRun(run_id, runs / f"{run_id}.log", started)


def follow_run(
    run: SubmittedRun,
    *,
    flwr_home: Path,
    federation: str,
    timeout: float,
    on_log: Callable[[str], None] | None = None,
    detach: threading.Event | None = None,
) -> RunResult:
    """Follow ``run`` to its end (its log streamed, then its status read) and return how it ended.

    Parameters:
        run: what :func:`submit_run` returned.
        flwr_home, federation: as given to :func:`submit_run`.
        timeout: seconds from the submission to the end of the run; after it the run is stopped.
        on_log: called with each line of the ServerApp's log (no newline) as it arrives; the
            lines also go to ``run.log_file`` as they arrive.
        detach: once set, stop following (the run goes on on the SuperLink).

    Raises:
        FlowerRunError: the run ended other than ``finished:completed``, or it ran out of time
            and was stopped (the log tail is quoted).
        RunDetached: ``detach`` was set before the run ended.
    """
    remaining = max(1.0, timeout - (time.monotonic() - run.started))
    with _control(flwr_home, federation) as control:
        logs, outcome = _follow(_control(flwr_home, federation), run.run_id, run.log_file, remaining, on_log, detach)
        if outcome == "detached":
            raise RunDetached(f"run {run.run_id} is no longer followed; it goes on on the SuperLink "
                              f"(`flwr ls {federation} --run-id {run.run_id}` shows it)", run_id=run.run_id)
        if outcome == "timeout":
            _stop(control, run.run_id)
            raise FlowerRunError(
                f"run {run.run_id} did not finish within {timeout} s and was stopped; log tail:\n{tail_text(logs)}",
                run_id=run.run_id,
                status="timeout",
            )
        if outcome:  # the status below says how the run ended; this says why we could not follow it
            logs += f"\n(its log stream broke off: {outcome})"
        status, details = _run_status(control, run.run_id)
    if status != "finished:completed":
        raise FlowerRunError(
            f"run {run.run_id} ended {status} ({details}); log tail:\n{tail_text(logs)}",
            run_id=run.run_id,
            status=status,
        )
    return RunResult(run.run_id, status, logs, run.log_file, time.monotonic() - run.started, details)


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
        app_dir, flwr_home, federation, run_config: see :func:`submit_run`.
        timeout: seconds from submission to the end of the run; after it the run is stopped.
        on_submitted: called with the run id once the SuperLink has accepted the run.
        on_log: see :func:`follow_run`.

    If the caller is interrupted (Ctrl-C) while the run is followed, the run is stopped
    (``flwr stop``) before the interruption goes on.

    Raises:
        ValueError: a run_config key is not in the app's ``[tool.flwr.app.config]``, or a value
            cannot be passed.
        FlowerRunError: the submission was refused, the run ended other than
            ``finished:completed``, or it ran out of time (the log tail is quoted).
    """
    run = submit_run(app_dir, flwr_home=flwr_home, federation=federation, run_config=run_config)
    try:
        if on_submitted is not None:
            on_submitted(run.run_id)
        return follow_run(run, flwr_home=flwr_home, federation=federation, timeout=timeout, on_log=on_log)
    except FlowerRunError:
        raise  # it ended, or was stopped on time-out
    except BaseException:  # interrupted: the run would go on without anyone following it
        stop_run(run.run_id, federation, flwr_home)
        raise


def stop_run(run_id: int, federation: str, flwr_home: Path) -> None:
    """Ask the SuperLink to stop run ``run_id`` (as ``flwr stop``); a run that has ended already is left alone.

    A SuperLink that cannot be reached is not an error here: there is nothing more to do.
    """
    with contextlib.suppress(CoordinatorError), _control(flwr_home, federation) as control:
        _stop(control, run_id)


def _stop(control: ControlClient, run_id: int) -> None:
    with contextlib.suppress(ControlError, ControlUnavailable):
        stop_link_run(control, run_id)


def flwr(args: Sequence[str], flwr_home: Path, *, what: str, timeout: float = 120) -> dict[str, object]:
    """Run one ``flwr ... --format json`` command with FLWR_HOME ``flwr_home`` and return its JSON answer.

    Raises:
        FlowerMissing: flwr is not installed in this venv.
        FlowerRunError: the command failed, did not answer within ``timeout`` seconds, or not in
            JSON (its output is quoted).
    """
    try:
        done = subprocess.run(
            [str(tool("flwr")), *args],
            env=flwr_env(flwr_home),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        output = tail_text(clean(exc.stdout) + clean(exc.stderr))
        raise FlowerRunError(f"{what}: `flwr {' '.join(args)}` did not answer within {timeout} s:\n{output}") from None
    try:
        answer = json.loads(done.stdout)
    except json.JSONDecodeError:
        answer = None
    if done.returncode != 0 or not isinstance(answer, dict):
        output = tail_text(clean(done.stdout + done.stderr))
        raise FlowerRunError(f"{what}: `flwr {' '.join(args)}` exited with {done.returncode}:\n{output}")
    return answer


def flwr_env(flwr_home: Path, extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a Flower process or ``flwr`` command whose FLWR_HOME is ``flwr_home``.

    It is this process's environment, plus ``extra_env``, plus: telemetry and the update check
    off (otherwise every process first POSTs to flower.ai), runtime dependency installation
    off, this venv's ``bin`` first on PATH, unbuffered Python, and loopback never through a proxy.
    """
    env = dict(os.environ)  # passed through whole: children need PATH, HOME, locale
    env.update(extra_env or {})
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), *_LOOPBACK) if p)
    env.update(
        FLWR_HOME=str(flwr_home.resolve()),
        FLWR_TELEMETRY_ENABLED="0",
        FLWR_DISABLE_UPDATE_CHECK="1",
        FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1",
        PATH=os.pathsep.join([str(bin_dir()), env.get("PATH", "")]),
        PYTHONUNBUFFERED="1",
        NO_PROXY=no_proxy,
        no_proxy=no_proxy,
    )
    return env


def bin_dir() -> Path:
    """This venv's ``bin``, where the Flower commands are."""
    return Path(sys.executable).parent


def tool(name: str) -> Path:
    """The Flower command ``name`` of this venv.

    Raises:
        FlowerMissing: flwr is not installed in this venv.
    """
    path = bin_dir() / name
    if not path.exists():
        raise FlowerMissing(f"{name} not found in {bin_dir()}: install flwr==1.41.0 in this venv (make deps does it)")
    return path


def clean(text: str | bytes | None) -> str:
    """Return ``text`` decoded (bytes as UTF-8, bad bytes replaced) with ANSI colour codes removed."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return _ANSI.sub("", text or "")


def tail_text(text: str, lines: int = 30) -> str:
    """Return the last ``lines`` lines of ``text``."""
    return "\n".join(text.splitlines()[-lines:])


def _run_status(control: ControlClient, run_id: int) -> tuple[str, str]:
    status = "unknown"
    for _ in range(50):  # the stream ends as the run finishes; the status may trail by a moment
        try:
            status, details = run_status(control, run_id)
        except (ControlError, ControlUnavailable) as exc:
            raise FlowerRunError(f"reading the status of run {run_id}: {exc}", run_id=run_id) from None
        if status.startswith("finished"):
            return status, details
        time.sleep(0.2)
    return status, "still not finished after its log stream ended"


def _follow(
    control: ControlClient,
    run_id: int,
    log_file: Path,
    timeout: float,
    on_log: Callable[[str], None] | None,
    detach: threading.Event | None,
) -> tuple[str, str]:
    """Stream the run's log (which ends with the run) into ``log_file`` and ``on_log``, through ``control``.

    ``control`` is this stream's own client: it is closed on return (which ends a stream still open).
    Returns the log and how following ended: ``""`` (the stream ended), ``"timeout"`` (``timeout``
    ran out first), ``"detached"`` (``detach`` was set), or why the stream broke off.
    """
    lines: Queue[str | None] = Queue()
    broke_off: list[str] = []

    def pump() -> None:  # a thread, so the wait below can time out between lines
        try:
            for line in log_lines(control, run_id):
                lines.put(line)
        except (ControlError, ControlUnavailable) as exc:
            broke_off.append(str(exc))
        except Exception as exc:  # the client was closed under it (time-out, detach): reported, not raised
            broke_off.append(f"{type(exc).__name__}: {exc}")
        finally:
            lines.put(None)

    reader = threading.Thread(target=pump, name=f"run-{run_id}-log", daemon=True)
    reader.start()
    text: list[str] = []
    deadline = time.monotonic() + timeout
    with control, open(log_file, "w", encoding="utf-8") as out:
        while (left := deadline - time.monotonic()) > 0:
            if detach is not None and detach.is_set():
                outcome = "detached"
                break
            try:
                line = lines.get(timeout=min(left, 1.0))
            except Empty:
                continue
            if line is None:
                reader.join()
                return "".join(text), (broke_off[0] if broke_off else "")
            text.append(line := clean(line))
            out.write(line)
            out.flush()
            if on_log is not None:
                on_log(line.rstrip("\n"))
        else:
            outcome = "timeout"
    reader.join(timeout=5)  # closing the client ended the stream it waited on
    return "".join(text), outcome
