"""A real Orthanc (Debian package ``orthanc``) on loopback, started once per test session.

Orthanc runs as our own child process with a config file in a temporary directory: its own
storage and index, no plugins, authentication on with a user whose password is generated
here, remote access refused, and no DICOM listener. Binding: Orthanc reads
``HttpBindAddresses`` from version 1.12.10 on and then listens on 127.0.0.1 only; older
versions (Debian 12 ships 1.10.1) ignore the option and listen on every interface, where
``RemoteAccessAllowed: false`` makes Orthanc refuse every client that is not 127.0.0.1.
DCMTK's DICOM listener cannot be bound to one address in any version, so it is disabled.
The process is stopped by its PID: SIGTERM, then SIGKILL after a timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from deploy.anvil import free_port
from node.pacs import OrthancClient

_SBIN = "/usr/sbin:/usr/local/sbin"  # where Debian puts Orthanc; often not on a user's PATH
_START_ATTEMPTS = 3  # a free port can be taken by someone else before Orthanc binds it


@dataclass(frozen=True)
class OrthancServer:
    """A running Orthanc: its PID, REST endpoint, credentials and files."""

    pid: int
    url: str
    http_port: int
    username: str
    password: str = field(repr=False)  # kept out of pytest's failure output
    directory: Path
    log_file: Path
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    def client(self) -> OrthancClient:
        """A client with this server's credentials."""
        return OrthancClient(self.url, self.username, self.password)


def orthanc_binary() -> Path | None:
    """Locate the ``Orthanc`` executable (PATH, then the sbin directories), or None."""
    found = shutil.which("Orthanc") or shutil.which("Orthanc", path=_SBIN)
    return Path(found) if found else None


def start_orthanc(binary: Path, directory: Path, *, timeout: float = 60.0) -> OrthancServer:
    """Start Orthanc on a free loopback port and wait until ``GET /system`` answers.

    Raises:
        RuntimeError: it exited or did not answer in time (its log is quoted).
    """
    username = "metai-test"
    password = secrets.token_urlsafe(24)
    for attempt in range(1, _START_ATTEMPTS + 1):
        port = free_port()
        run_dir = directory / f"attempt-{attempt}"
        run_dir.mkdir(parents=True)
        config_file = run_dir / "orthanc.json"
        config = _config(run_dir, port, username, password)
        # The file holds the password: readable by us only.
        fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2)
        log_file = run_dir / "orthanc.log"
        with open(log_file, "wb") as log:
            proc = subprocess.Popen(
                [str(binary), str(config_file)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        url = f"http://127.0.0.1:{port}"
        if _wait_ready(proc, url, username, password, timeout):
            return OrthancServer(proc.pid, url, port, username, password, run_dir, log_file, proc)
        if proc.poll() is None:  # alive but silent: no point retrying on another port
            _terminate(proc, 10.0)
            raise RuntimeError(f"Orthanc did not answer on {url} within {timeout} s:\n{_tail(log_file)}")
    raise RuntimeError(
        f"Orthanc exited with {proc.returncode} on each of {_START_ATTEMPTS} attempts:\n{_tail(log_file)}"
    )


def stop_orthanc(server: OrthancServer, timeout: float = 30.0) -> None:
    """Stop ``server`` by its PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    _terminate(server.process, timeout)


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    """A real Orthanc for the session; skipped if the Debian package is not installed."""
    binary = orthanc_binary()
    if binary is None:
        pytest.skip(
            "Orthanc is not installed: install the Debian package `orthanc` "
            "(`bash deploy/install-system-deps.sh`, which `make test` runs)"
        )
    server = start_orthanc(binary, tmp_path_factory.mktemp("orthanc"))
    yield server
    stop_orthanc(server)


def _config(run_dir: Path, port: int, username: str, password: str) -> dict[str, object]:
    return {
        "Name": "metai-test-pacs",
        "StorageDirectory": str(run_dir / "storage"),
        "IndexDirectory": str(run_dir / "index"),
        "StorageCompression": False,
        "Plugins": [],  # not the system's /usr/share/orthanc/plugins
        "LuaScripts": [],
        "HttpServerEnabled": True,
        "HttpPort": port,
        "HttpBindAddresses": ["127.0.0.1"],
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {username: password},
        "HttpDescribeErrors": True,
        "OrthancExplorerEnabled": False,
        "DicomServerEnabled": False,
        "DicomPort": free_port(),  # unused while the DICOM server is off; never the shared 4242
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "SaveJobs": False,
    }


def _wait_ready(proc: subprocess.Popen[bytes], url: str, username: str, password: str, timeout: float) -> bool:
    """True once ``/system`` answers 200; False if the process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    with httpx.Client(auth=(username, password), timeout=2.0, trust_env=False) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            with contextlib.suppress(httpx.TransportError):
                if http.get(url + "/system").status_code == 200:
                    return True
            time.sleep(0.05)
    return False


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
