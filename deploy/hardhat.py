"""Start and stop Hardhat's network, a second local EVM beside Anvil.

The contracts and every client in the project speak plain JSON-RPC, so any EVM endpoint should
do where Anvil is used. Hardhat's network (npm ``hardhat``, pinned in package.json; its EVM is
Nomic Foundation's EDR, written apart from Anvil's) is the second implementation the tests run
against to show it (docs/chains.md). It is a development chain like Anvil: in memory only,
automine (one block per transaction), funded dev accounts.

Node.js runs Hardhat's command-line script directly (not ``npx``, not Hardhat's bootstrap), so
the PID we hold is the server's and stopping it is exact. The configuration is a file this
module writes into the run directory: the chain id, the ``cancun`` rules (the EVM version the
contracts are compiled for), dev accounts with fresh keys made for this start, and reverts
answered as Anvil answers them: a call (``eth_call``, ``eth_estimateGas``) that reverts is a
JSON-RPC error carrying the revert data (``throwOnCallFailures`` on, Hardhat's default; off,
``eth_call`` would return the revert data as if it were the call's result), and a transaction
that reverts is mined with status 0 (``throwOnTransactionFailures`` off; on, the send itself
would fail). Hardhat keeps its own files (an analytics id, its variables
store) in the run directory, not in the user's home; it asks for telemetry consent only on a
terminal and sends nothing without it, so it sends nothing here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from eth_account import Account

from deploy.devchain import rpc
from deploy.errors import ServiceStartError, ToolMissing
from deploy.process import free_port, read_log, spawn, start_time, stop_tree, tail, tail_text

__all__ = ["BLOCK_GAS_LIMIT", "DEV_BALANCE", "HARDFORK", "HardhatNode", "hardhat_cli", "start_hardhat",
           "stop_hardhat"]

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The EVM rules of the chain: those the contracts are compiled for (contracts/build.py).
HARDFORK = "cancun"
#: Gas a block may hold (Anvil's default too); the largest contract deployment takes about 2.1 million.
BLOCK_GAS_LIMIT = 30_000_000
#: Wei each dev account starts with (10,000 ether, as on Anvil).
DEV_BALANCE = 10_000 * 10**18
CONFIG_FILE = "hardhat.config.js"


@dataclass(frozen=True)
class HardhatNode:
    """A running Hardhat network: its PID, endpoint, files and funded dev keys."""

    pid: int
    port: int
    rpc_url: str
    chain_id: int
    log_file: Path
    config_file: Path
    dev_keys: tuple[str, ...]  # private keys of the funded dev accounts, made for this start
    start_time: int | None = None  # of ``pid``, in clock ticks since boot: a reused PID is not stopped

    def to_json(self) -> str:
        """Serialise for the run directory's ``hardhat.json``."""
        data = {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}
        data["dev_keys"] = list(self.dev_keys)
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> HardhatNode:
        """Parse what :meth:`to_json` wrote."""
        d = json.loads(text)
        return cls(pid=int(d["pid"]), port=int(d["port"]), rpc_url=d["rpc_url"], chain_id=int(d["chain_id"]),
                   log_file=Path(d["log_file"]), config_file=Path(d["config_file"]), dev_keys=tuple(d["dev_keys"]),
                   start_time=int(d["start_time"]) if d.get("start_time") is not None else None)


def hardhat_cli(root: Path = REPO_ROOT) -> Path:
    """Locate Hardhat's command-line script in ``root``'s ``node_modules``.

    Raises:
        ToolMissing: Node.js is not on PATH, or npm ``hardhat`` is not installed under ``root``.
    """
    if shutil.which("node") is None:
        raise ToolMissing("node is not on PATH; install Node.js 20 (make does it)")
    script = root / "node_modules" / "hardhat" / "internal" / "cli" / "cli.js"
    if not script.exists():
        raise ToolMissing(f"Hardhat not found at {script}: run `npm ci` in {root} (make does it)")
    return script


def _config(chain_id: int, keys: list[str]) -> str:
    network = {
        "chainId": chain_id,
        "hardfork": HARDFORK,
        "blockGasLimit": BLOCK_GAS_LIMIT,
        "mining": {"auto": True, "interval": 0},
        "accounts": [{"privateKey": key, "balance": str(DEV_BALANCE)} for key in keys],
        "throwOnTransactionFailures": False,
        "throwOnCallFailures": True,
        "loggingEnabled": False,  # the log would otherwise hold every request
    }
    return ("// Written by deploy/hardhat.py for this start; the keys are this chain's dev accounts.\n"
            f"module.exports = {json.dumps({'networks': {'hardhat': network}}, indent=2)};\n")


def start_hardhat(
    run_dir: Path,
    *,
    port: int | None = None,
    chain_id: int = 31337,
    accounts: int = 10,
    timeout: float = 60.0,
    root: Path = REPO_ROOT,
) -> HardhatNode:
    """Start Hardhat's network on 127.0.0.1 and wait until it answers ``eth_chainId``.

    Parameters:
        run_dir: where its configuration, log, own files and ``hardhat.json`` go (created if needed).
        port: TCP port; a free one if None.
        chain_id: the chain id to report.
        accounts: how many funded dev accounts to create (each with :data:`DEV_BALANCE`).
        timeout: seconds to wait for the first answer.
        root: the directory whose ``node_modules`` holds Hardhat (the repository).

    Raises:
        ToolMissing: Node.js or Hardhat is not installed.
        ServiceStartError: it exited or did not answer in time (its log is quoted).
    """
    script = hardhat_cli(root)
    if accounts < 1:
        raise ValueError(f"accounts is {accounts}; the chain needs at least one funded account, pass 1 or more")
    run_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    keys = [Account.create().key.to_0x_hex() for _ in range(accounts)]
    first = Account.from_key(keys[0]).address
    config_file = run_dir / CONFIG_FILE
    _write_private(config_file, _config(chain_id, keys))
    home = run_dir / "hardhat-home"
    # Hardhat reads HARDHAT_* variables as command-line options: none of the caller's reach it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARDHAT_")}
    env.update({"HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_DATA_HOME": str(home / "data"), "XDG_CACHE_HOME": str(home / "cache")})
    cmd = [str(shutil.which("node")), str(script), "node", "--hostname", "127.0.0.1", "--port", str(port),
           "--config", str(config_file)]
    log_file = run_dir / "hardhat.log"
    log_start = log_file.stat().st_size if log_file.exists() else 0
    # Run from the repository: Hardhat refuses to start unless it is installed where it runs.
    proc = spawn(cmd, log_file, env=env, own_session=False, cwd=root)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServiceStartError(f"hardhat exited with {proc.returncode}:\n"
                                    f"{tail_text(read_log(log_file, log_start), 20)}")
        with contextlib.suppress(requests.RequestException, RuntimeError, ValueError):
            # Ours, not another chain on a port taken meanwhile: only ours funds this start's fresh key.
            if (int(rpc(url, "eth_chainId", timeout=2), 16) == chain_id
                    and int(rpc(url, "eth_getBalance", [first, "latest"], timeout=2), 16) == DEV_BALANCE):
                break
        if time.monotonic() > deadline:
            stop_tree(proc.pid, timeout=5.0)
            raise ServiceStartError(f"hardhat did not answer on {url} within {timeout} s:\n{tail(log_file, 20)}")
        time.sleep(0.05)
    node = HardhatNode(pid=proc.pid, port=port, rpc_url=url, chain_id=chain_id, log_file=log_file,
                       config_file=config_file, dev_keys=tuple(keys), start_time=start_time(proc.pid))
    _write_private(run_dir / "hardhat.json", node.to_json())
    return node


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file ``path`` readable by its owner only (it holds the dev keys)."""
    path.unlink(missing_ok=True)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as out:
        out.write(text)


def stop_hardhat(node: HardhatNode, timeout: float = 10.0) -> None:
    """Stop ``node`` by its PID (SIGTERM; SIGKILL after ``timeout``). Its chain is gone with it.

    Stopping twice is harmless: a PID that now belongs to a process started at another time
    (recorded in ``node.start_time``) is left alone.
    """
    stop_tree(node.pid, (), timeout, node.start_time)
