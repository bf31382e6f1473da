"""Start and stop hospital signing agents (node/signer.py) next to their SuperNodes.

Each agent unlocks its hospital key once and signs the node's contributions for every round's
ClientApp process over a Unix socket; the ClientApp finds it through the node config key
``signer-socket``. The socket lives in a fresh private directory under the system's temporary
directory: Unix socket paths are limited to 107 bytes, which a deep run directory can exceed.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.errors import ServiceStartError
from deploy.process import is_gone, spawn, start_time, stop_tree, tail

SOCKET_NAME = "agent.sock"


@dataclass(frozen=True)
class SignerProcess:
    """A running signing agent."""

    pid: int
    name: str
    socket: Path
    log_file: Path
    start_time: int | None

    def to_json(self) -> str:
        """Serialise (for a federation's record)."""
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> SignerProcess:
        """Read what :meth:`to_json` wrote."""
        data = json.loads(text)
        return cls(int(data["pid"]), str(data["name"]), Path(data["socket"]), Path(data["log_file"]),
                   None if data["start_time"] is None else int(data["start_time"]))

    def running(self) -> bool:
        """Whether the agent is still the process that was started."""
        return self.start_time is not None and start_time(self.pid) == self.start_time


def start_signer(node_dir: Path, passphrase_file: Path, log_file: Path, name: str,
                 timeout: float = 60.0) -> SignerProcess:
    """Start the signing agent of the node in ``node_dir`` and wait until it listens.

    Raises:
        ServiceStartError: it exited (wrong passphrase, no key, chain unreachable) or did not
            listen within ``timeout`` seconds; its log is quoted.
    """
    socket = Path(tempfile.mkdtemp(prefix="metai-signer-")) / SOCKET_NAME
    cmd = [sys.executable, "-m", "node.signer", "--node-dir", str(node_dir.resolve()),
           "--passphrase-file", str(passphrase_file.resolve()), "--socket", str(socket)]
    proc = spawn(cmd, log_file)
    deadline = time.monotonic() + timeout
    while not (socket.exists() and Path(str(socket) + ".key").exists()):
        if is_gone(proc.pid) or time.monotonic() > deadline:
            if not is_gone(proc.pid):
                stop_tree(proc.pid, (), 5.0)
            shutil.rmtree(socket.parent, ignore_errors=True)
            raise ServiceStartError(
                f"signing agent of {node_dir} did not start; its log, {log_file}:\n{tail(log_file)}"
            )
        time.sleep(0.05)
    return SignerProcess(proc.pid, name, socket, log_file, start_time(proc.pid))


def stop_signer(signer: SignerProcess, timeout: float = 10.0) -> None:
    """Stop the agent (it removes its socket and key) and its private directory; twice is harmless."""
    if signer.start_time is not None:
        stop_tree(signer.pid, (), timeout, signer.start_time)
    shutil.rmtree(signer.socket.parent, ignore_errors=True)
