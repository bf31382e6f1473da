"""Runs on a Flower deployment, through the ``flwr`` CLI: connections, SuperNode registration, submit and follow.

The CLI talks to a SuperLink's Control API through a named connection in
``$FLWR_HOME/config.toml`` (:func:`write_federation_config`). :func:`run_app` submits an app
with ``flwr run``, streams its log with ``flwr log --stream`` (:func:`_follow`, which ends
with the run) and reads how it ended with ``flwr ls``. See docs/flower.md.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
import threading
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, Queue

from deploy.errors import DeployError
from deploy.flower.config import ConfigValue, check_run_config_keys, checked_config, toml_text
from deploy.flower.processes import SuperLinkProcess, check_security, tool, tool_env
from deploy.flower_certs import FlowerSecurity
from deploy.process import clean, tail_text

__all__ = ["FlowerRunError", "RunResult", "register_supernodes", "run_app", "write_federation_config"]

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


class FlowerRunError(DeployError, RuntimeError):
    """A Flower run could not start, failed, or did not finish in time; the message quotes its log."""

    def __init__(self, message: str, *, run_id: int | None = None, status: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.status = status


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id, final status (``finished:completed`` on success) and ServerApp log."""

    run_id: int
    status: str
    logs: str  # what the ServerApp logged and printed (ClientApps print into their SuperNode's log)
    log_file: Path  # the same, kept as ``<flwr_home>/runs/<run_id>.log``
    seconds: float  # from submission to the end of the log stream
    details: str = ""


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
    check_security(superlink, security)
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
    config_file.write_text(toml_text(config), encoding="utf-8")


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
    check_run_config_keys(app_dir, run_config)
    started = time.monotonic()
    runs = flwr_home / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    # A file, not key=value words: string values may hold spaces and quotes.
    overrides = runs / f"pending-{uuid.uuid4().hex}.run-config.toml"
    overrides.write_text(toml_text(dict(checked_config(run_config, "run_config"))), encoding="utf-8")
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


def _flwr(args: list[str], flwr_home: Path, *, what: str, timeout: float = 120) -> dict[str, object]:
    """Run one ``flwr ... --format json`` command and return its JSON answer."""
    done = subprocess.run(
        [str(tool("flwr")), *args],
        env=tool_env(flwr_home),
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
            [str(tool("flwr")), "log", str(run_id), federation, "--stream"],
            env=tool_env(flwr_home),
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
