"""Start and stop a local Anvil chain, and the few Anvil-only calls tests need.

Anvil's own binary is run directly from ``node_modules`` (npm ``@foundry-rs/anvil-linux-amd64``,
the platform package of ``@foundry-rs/anvil``, pinned directly because npm 11 leaves the
wrapper's other-platform packages out of the lock file, which then fails ``npm ci``), so the
PID we hold is Anvil's and stopping it is exact. It listens on 127.0.0.1 only and keeps the
states of a bounded number of past blocks in memory (``--prune-history N``), so that consent
can be asked "as of" a recent block.

With ``state_file`` a chain survives restarts: Anvil loads the file on start, saves to it every
few seconds and on stop (SIGTERM), and saves the kept past states with it
(``--preserve-historical-states``), so that after a restart the same past blocks answer
``eth_call`` as before. Blocks, transactions and logs are saved whole. Anvil rewrites the file
in place, so a SIGKILL during a save leaves it torn; :func:`start_anvil` then starts from the
state the chain last started from (``<state_file>.prev``). docs/contracts.md has the figures.

The development calls tests make (snapshots, clock, mining) live in :mod:`deploy.devchain`, which
Hardhat's network (:mod:`deploy.hardhat`) answers as well; they are re-exported here for the
callers that import them from this module. Everything else in the project speaks plain JSON-RPC.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import requests

from deploy.devchain import advance_time, mine, revert_to, rpc, snapshot
from deploy.errors import ServiceStartError, StateFileUnreadable, ToolMissing
from deploy.process import HOST, free_port, read_log, spawn, start_time, stop_tree, tail, tail_text

__all__ = [
    "MEMORY_HISTORY",
    "SAVED_HISTORY",
    "SAVE_INTERVAL",
    "AnvilNode",
    "StateFileUnreadable",
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
_log = logging.getLogger("metai.deploy.anvil")

#: Past block states a chain without a state file keeps (in memory only).
MEMORY_HISTORY = 10_000
#: Past block states a chain with a state file keeps, in memory and in the file. Anvil saves each
#: as a whole copy of the chain's state plus the hash of every earlier block, so the file grows as
#: kept states x height (2,000 blocks of consents: 56 MB with 128 states, 427 MB with all 2,000)
#: and is written out at every save. 128 is what a geth full node keeps; older blocks are answered
#: from the logs, which are saved whole.
SAVED_HISTORY = 128
#: Seconds between Anvil's saves of the state file (Anvil's own default is 60): a SIGKILL loses
#: the blocks mined since the last save.
SAVE_INTERVAL = 10
_UNREADABLE_STATE = "failed to parse json file"  # what Anvil says of a torn or foreign state file


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


def start_anvil(
    run_dir: Path,
    *,
    port: int | None = None,
    state_file: Path | None = None,
    chain_id: int = 31337,
    host: str = HOST,
    accounts: int = 10,
    history_states: int | None = None,
    save_interval: int = SAVE_INTERVAL,
    timeout: float = 30.0,
) -> AnvilNode:
    """Start Anvil (on 127.0.0.1 unless ``host`` says otherwise) and wait until it answers.

    Parameters:
        run_dir: where its log, config output and ``anvil.json`` go (created if needed).
        port: TCP port; a free one if None.
        state_file: load state from it if it exists, save state to it every ``save_interval``
            seconds and on stop, with the kept past states (see the module's docstring). The
            state loaded is also copied to ``<state_file>.prev``, the fallback for a torn save.
        chain_id: the chain id to report.
        host: the address it listens on; another than 127.0.0.1 only for a host of a
            :mod:`deploy.netns` lab, where this is called inside that host.
        accounts: how many funded dev accounts to create.
        history_states: how many past block states stay queryable (node cohorts and audits
            query consent "as of" a past block); default :data:`MEMORY_HISTORY`, or
            :data:`SAVED_HISTORY` with a state file, where they also survive a restart.
        save_interval: seconds between saves of ``state_file`` (at least 1).
        timeout: seconds to wait for the first answer.

    Raises:
        ToolMissing: Anvil is not installed.
        StateFileUnreadable: ``state_file`` is torn or not Anvil's, and there is no ``.prev``.
        ServiceStartError: it exited or did not answer in time (its log is quoted).
    """
    binary = anvil_binary()
    if save_interval < 1:
        raise ValueError(f"save_interval is {save_interval} s; Anvil saves at most once a second, pass 1 or more")
    run_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if history_states is None:
        history_states = MEMORY_HISTORY if state_file is None else SAVED_HISTORY
    cmd = [
        str(binary),
        "--host", host,
        "--port", str(port),
        "--chain-id", str(chain_id),
        "--accounts", str(accounts),
        "--prune-history", str(history_states),  # with a number: kept in memory, none written to ~/.foundry
        "--config-out", str(run_dir / "anvil-config.json"),
    ]
    if state_file is None:
        return _launch(cmd, run_dir, host, port, chain_id, None, timeout)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    cmd += ["--state", str(state_file), "--preserve-historical-states", "--state-interval", str(save_interval)]
    previous = state_file.with_name(state_file.name + ".prev")
    loading = state_file.with_name(state_file.name + ".loading")
    if state_file.exists():
        shutil.copyfile(state_file, loading)  # a copy: Anvil rewrites the state file in place once it runs
    else:
        previous.unlink(missing_ok=True)  # a new chain: never fall back to one that was there before
    try:
        node = _launch(cmd, run_dir, host, port, chain_id, state_file, timeout)
    except StateFileUnreadable as exc:
        loading.unlink(missing_ok=True)
        if not previous.exists():
            raise StateFileUnreadable(
                f"{exc}\nThere is no {previous.name} to start from instead: move {state_file} away to start a new chain"
            ) from exc
        _log.warning("%s\nStarting from %s, the state the chain last started from", exc, previous)
        shutil.copyfile(previous, state_file)
        return _launch(cmd, run_dir, host, port, chain_id, state_file, timeout)
    if loading.exists():
        os.replace(loading, previous)
    return node


def _launch(
    cmd: list[str], run_dir: Path, host: str, port: int, chain_id: int, state_file: Path | None, timeout: float
) -> AnvilNode:
    """Run ``cmd`` (Anvil), wait until it answers on ``port``, and write ``anvil.json``."""
    log_file = run_dir / "anvil.log"
    config_out = run_dir / "anvil-config.json"
    config_out.unlink(missing_ok=True)
    log_start = log_file.stat().st_size if log_file.exists() else 0
    proc = spawn(cmd, log_file, own_session=False)  # in our session, as it always was
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            _refuse_exit(proc, tail_text(read_log(log_file, log_start), 20), state_file)
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


def _refuse_exit(proc: subprocess.Popen[bytes], last: str, state_file: Path | None) -> NoReturn:
    """Raise the error that says why Anvil exited while starting (``last``: the end of its log)."""
    if state_file is not None and _UNREADABLE_STATE in last:
        raise StateFileUnreadable(
            f"anvil cannot read the state file {state_file} ({state_file.stat().st_size} bytes): it is cut short, "
            f"most likely by a kill while Anvil saved it, or is not Anvil's:\n{last}"
        )
    raise ServiceStartError(f"anvil exited with {proc.returncode}:\n{last}")


def stop_anvil(node: AnvilNode, timeout: float = 30.0) -> None:
    """Stop ``node`` by its PID (SIGTERM, so it saves ``--state``; SIGKILL after ``timeout``).

    Stopping twice is harmless: a PID that now belongs to a process started at another time
    (recorded in ``node.start_time``) is left alone.
    """
    stop_tree(node.pid, (), timeout, node.start_time)
