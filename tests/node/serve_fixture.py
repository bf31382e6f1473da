"""A TLS SuperLink with SuperNode authentication, and ``metai-node serve`` run as a real process against it.

Each serve gets free 127.0.0.1 ports for its SuperNode and health check, and a short runtime
directory under the system's temporary directory (a Unix socket path holds at most 107 bytes,
which a test's tmp_path can exceed). Processes are stopped by PID afterwards, whatever the test did.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy.flower import FlowerSecurity, SuperLinkProcess, make_security, register_supernodes, start_superlink, stop
from deploy.process import free_ports
from node.federation_key import federation_key, key_pair
from node.health import HealthUnavailable, read_health
from node.procs import start_time
from tests.conftest import NODE_PASSPHRASE

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class SecureLink:
    """A SuperLink serving TLS that admits registered SuperNode keys only."""

    superlink: SuperLinkProcess
    security: FlowerSecurity

    def register(self, node_dir: Path, name: str) -> str:
        """Make the node's SuperNode key (as `metai-node federation-key` does) and register it; return its line."""
        key = federation_key(node_dir)
        security = FlowerSecurity(self.security.ca_cert, self.security.server_cert, self.security.server_key,
                                  {name: key_pair(node_dir)})
        register_supernodes(self.superlink, security, [name], self.superlink.flwr_home)
        return key.public_line

    def activations(self) -> list[int]:
        """The node ids the SuperLink logged as activated, in order."""
        text = self.superlink.log_file.read_text(errors="replace")
        return [int(line.rsplit("=", 1)[1]) for line in text.splitlines() if "[Fleet.ActivateNode] Activated" in line]


@pytest.fixture(scope="module")
def secure_link(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureLink]:
    run_dir = tmp_path_factory.mktemp("secure-link")
    security = make_security(run_dir / "security", [])
    superlink = start_superlink(run_dir / "superlink", security=security)
    try:
        yield SecureLink(superlink, security)
    finally:
        stop(superlink)


@dataclass
class Serve:
    """A ``metai-node serve`` process (stdout and stderr in files) and its settings."""

    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    out: Path
    err: Path
    runtime: Path
    log_dir: Path
    health_port: int
    pids_seen: set[tuple[int, int]] = field(default_factory=set)  # (pid, start time) of every child it reported

    def health(self) -> tuple[int, dict[str, Any]]:
        """serve's health answer (raises HealthUnavailable while nothing listens)."""
        status, body = read_health(self.health_port)
        for child in body.get("children", {}).values():
            if child.get("pid") and (started := start_time(child["pid"])) is not None:
                self.pids_seen.add((child["pid"], started))
        return status, body

    def wait_health(self, want: int = 200, timeout: float = 180.0, **expect: Any) -> dict[str, Any]:
        """Poll the health check until it answers ``want`` (and each ``child=value`` holds); return the body."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}: {self.stderr()}")
            with contextlib.suppress(HealthUnavailable):
                status, body = self.health()
                if status == want and all(check(body) for check in expect.values()):
                    return body
            time.sleep(0.25)
        raise AssertionError(f"health did not answer {want} within {timeout} s; last: {body}\n{self.logs()}")

    def wait_exit(self, timeout: float = 120.0) -> int:
        """Wait for serve to exit; its exit code."""
        return self.proc.wait(timeout=timeout)

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def logs(self) -> str:
        """serve's and its children's logs, for an assertion's message."""
        parts = []
        for name in ("serve.log", "signer.log", "supernode.log"):
            path = self.log_dir / name
            if path.exists():
                parts.append(f"--- {name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(parts)


def serve_env(node_dir: Path, link: SecureLink | None, runtime: Path, **settings: str) -> dict[str, str]:
    """The environment of a serve of ``node_dir`` against ``link`` (``NAME=value`` adds METAI_NODE_NAME)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    supernode_port, health_port = free_ports(2)
    env.update({"PYTHONPATH": str(REPO), "METAI_NODE_DIR": str(node_dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
                "METAI_NODE_RUNTIME_DIR": str(runtime), "METAI_NODE_SUPERNODE_PORT": str(supernode_port),
                "METAI_NODE_HEALTH_PORT": str(health_port)})
    if link is not None:
        env.update({"METAI_NODE_SUPERLINK_ADDRESS": link.superlink.fleet_address,
                    "METAI_NODE_SUPERLINK_ROOT_CERTIFICATES": str(link.security.ca_cert)})
    env.update({f"METAI_NODE_{name.upper()}": value for name, value in settings.items()})
    return env


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A fresh directory with a short path (for runtime directories holding a Unix socket)."""
    path = Path(tempfile.mkdtemp(prefix="ms-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[Any]:
    """Factory: start ``metai-node serve`` with an environment; every serve started is stopped after the test,
    with every child it ever reported (SIGKILL to what is left)."""
    started: list[Serve] = []

    def start(env: Mapping[str, str], name: str = "serve") -> Serve:
        out, err = tmp_path / f"{name}.{len(started)}.out", tmp_path / f"{name}.{len(started)}.err"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            proc = subprocess.Popen([sys.executable, "-m", "node.cli", "serve"], env=dict(env), cwd=tmp_path,
                                    stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True)
        log_dir = Path(env.get("METAI_NODE_LOG_DIR", Path(env["METAI_NODE_DIR"]) / "logs"))
        serve = Serve(proc, dict(env), out, err, Path(env["METAI_NODE_RUNTIME_DIR"]), log_dir,
                      int(env["METAI_NODE_HEALTH_PORT"]))
        started.append(serve)
        return serve

    yield start
    for serve in started:
        if serve.proc.poll() is None:
            serve.proc.send_signal(signal.SIGTERM)
            try:
                serve.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                serve.proc.kill()
                serve.proc.wait()
        for pid, started_at in serve.pids_seen:
            if start_time(pid) == started_at:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
