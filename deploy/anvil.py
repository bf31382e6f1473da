"""Start and stop a local Anvil chain, and the few Anvil-only calls tests need.

Anvil's own binary is run directly from ``node_modules`` (npm ``@foundry-rs/anvil-linux-amd64``,
the platform package of ``@foundry-rs/anvil``, pinned directly because npm 11 leaves the
wrapper's other-platform packages out of the lock file, which then fails ``npm ci``), so the
PID we hold is Anvil's and stopping it is exact. It listens on 127.0.0.1 only, keeps a
bounded number of past states in memory only (``--prune-history N``) and, with
``state_file``, saves its whole state on stop
and loads it on start, so a chain survives restarts. This module is the only place in the
project that uses Anvil-specific RPC methods; everything else speaks plain JSON-RPC.
"""

from __future__ import annotations

import contextlib
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from deploy.errors import ServiceStartError, ToolMissing
from deploy.process import free_port, spawn, start_time, stop_tree, tail

__all__ = [
    "AnvilNode",
    "advance_time",
    "anvil_binary",
    "free_port",
    "mine",
    "revert_to",
    "rpc",
    "snapshot",
    "start_anvil",
    "stop_anvil",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
_PLATFORMS = {("Linux", "x86_64"): "linux-amd64"}  # package.json pins this platform's Anvil package


@dataclass(frozen=True)
class AnvilNode:
    """A running Anvil: its PID, endpoint, files and funded dev keys."""

    pid: int
    port: int
    rpc_url: str
    chain_id: int
    log_file: Path
    state_file: Path | None
    dev_keys: tuple[str, ...]  # private keys of Anvil's funded dev accounts
    start_time: int | None = None  # of ``pid``, in clock ticks since boot: a reused PID is not stopped

    def to_json(self) -> str:
        """Serialise for the run directory's ``anvil.json``."""
        data = {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}
        data["dev_keys"] = list(self.dev_keys)
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AnvilNode:
        """Parse what :meth:`to_json` wrote."""
        d = json.loads(text)
        return cls(
            pid=int(d["pid"]),
            port=int(d["port"]),
            rpc_url=d["rpc_url"],
            chain_id=int(d["chain_id"]),
            log_file=Path(d["log_file"]),
            state_file=Path(d["state_file"]) if d.get("state_file") else None,
            dev_keys=tuple(d["dev_keys"]),
            start_time=int(d["start_time"]) if d.get("start_time") is not None else None,
        )


def anvil_binary() -> Path:
    """Locate Anvil's executable in ``node_modules``.

    Raises:
        ToolMissing: npm packages not installed, or no Anvil build for this platform.
    """
    key = (platform.system(), platform.machine())
    suffix = _PLATFORMS.get(key)
    if suffix is None:
        raise ToolMissing(f"no Anvil build is wired up for {key[0]} {key[1]}")
    path = REPO_ROOT / "node_modules" / "@foundry-rs" / f"anvil-{suffix}" / "bin" / "anvil"
    if not path.exists():
        raise ToolMissing(f"Anvil not found at {path}: run `npm ci` in {REPO_ROOT} (make does it)")
    return path


def rpc(url: str, method: str, params: list[Any] | None = None, timeout: float = 10.0) -> Any:
    """Send one JSON-RPC request and return its result (raises RuntimeError on an RPC error)."""
    reply = requests.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}, timeout=timeout
    ).json()
    if "error" in reply:
        raise RuntimeError(f"{method} failed: {reply['error']}")
    return reply["result"]


def start_anvil(
    run_dir: Path,
    *,
    port: int | None = None,
    state_file: Path | None = None,
    chain_id: int = 31337,
    accounts: int = 10,
    history_states: int = 10_000,
    timeout: float = 30.0,
) -> AnvilNode:
    """Start Anvil on 127.0.0.1 and wait until it answers.

    Parameters:
        run_dir: where its log, config output and ``anvil.json`` go (created if needed).
        port: TCP port; a free one if None.
        state_file: load state from it if it exists, and save state to it on stop.
        chain_id: the chain id to report.
        accounts: how many funded dev accounts to create.
        history_states: how many past block states stay queryable (kept in memory only;
            node cohorts and audits query consent "as of" a past block).
        timeout: seconds to wait for the first answer.

    Raises:
        ToolMissing: Anvil is not installed.
        ServiceStartError: it exited or did not answer in time (its log is quoted).
    """
    binary = anvil_binary()
    run_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_file = run_dir / "anvil.log"
    config_out = run_dir / "anvil-config.json"
    config_out.unlink(missing_ok=True)
    cmd = [
        str(binary),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--accounts", str(accounts),
        "--prune-history", str(history_states),
        "--config-out", str(config_out),
    ]
    if state_file is not None:
        state_file.parent.mkdir(parents=True, exist_ok=True)
        cmd += ["--state", str(state_file)]
    proc = spawn(cmd, log_file, own_session=False)  # in our session, as it always was
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServiceStartError(f"anvil exited with {proc.returncode}:\n{tail(log_file, 20)}")
        with contextlib.suppress(requests.RequestException, RuntimeError, ValueError):
            if int(rpc(url, "eth_chainId", timeout=2), 16) == chain_id and config_out.exists():
                break
        if time.monotonic() > deadline:
            stop_tree(proc.pid, timeout=5.0)
            raise ServiceStartError(f"anvil did not answer on {url} within {timeout} s:\n{tail(log_file, 20)}")
        time.sleep(0.05)
    config = json.loads(config_out.read_text(encoding="utf-8"))
    node = AnvilNode(
        pid=proc.pid,
        port=port,
        rpc_url=url,
        chain_id=chain_id,
        log_file=log_file,
        state_file=state_file,
        dev_keys=tuple(config["private_keys"]),
        start_time=start_time(proc.pid),
    )
    (run_dir / "anvil.json").write_text(node.to_json(), encoding="utf-8")
    return node


def stop_anvil(node: AnvilNode, timeout: float = 30.0) -> None:
    """Stop ``node`` by its PID (SIGTERM, so it saves ``--state``; SIGKILL after ``timeout``).

    Stopping twice is harmless: a PID that now belongs to a process started at another time
    (recorded in ``node.start_time``) is left alone.
    """
    stop_tree(node.pid, (), timeout, node.start_time)


# ---------------------------------------------------------------------- Anvil-only calls


def snapshot(url: str) -> str:
    """Snapshot the chain state (``evm_snapshot``); returns an id for :func:`revert_to`."""
    return str(rpc(url, "evm_snapshot"))


def revert_to(url: str, snapshot_id: str) -> None:
    """Return the chain to ``snapshot_id`` (``evm_revert``)."""
    if not rpc(url, "evm_revert", [snapshot_id]):
        raise RuntimeError(f"evm_revert to {snapshot_id} refused")


def advance_time(url: str, seconds: int) -> None:
    """Move the chain clock forward by ``seconds`` and mine a block."""
    rpc(url, "evm_increaseTime", [seconds])
    rpc(url, "evm_mine")


def mine(url: str, blocks: int = 1) -> None:
    """Mine ``blocks`` empty blocks."""
    rpc(url, "anvil_mine", [hex(blocks)])
