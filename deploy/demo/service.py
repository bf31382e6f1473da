"""The coordinator service as the demo runs it: ``python -m coordinator.cli serve`` in a process of its own.

Its settings reach it as ``METAI_COORDINATOR_*`` variables (:func:`deploy.federation.coordinator_env`
of one :class:`CoordinatorSettings`, so that a SuperLink started with the same settings runs the
ServerApp with the same keys and model folder); its database is SQLite under the demo's folder,
its port a free one on 127.0.0.1. Its relayer key, apart from the coordinator's, is funded by the
admin. It is stopped by its PID (and start time), also when the demo fails.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from contracts.chain import Chain
from coordinator.core.config import CoordinatorSettings
from deploy.errors import ServiceStartError
from deploy.process import HOST, free_port, spawn, start_time, stop_tree, tail

_REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = "demo coordinator passphrase, local only"
# Every demo patient signs in from this one machine, which the service counts as one client.
_SIGN_IN_RATE = 10_000
# Throwaway keys of a throwaway chain: a light scrypt work factor, so that each (re)start of the
# service and each ServerApp unlocks them in a fraction of a second instead of seconds.
_SCRYPT_N = 2**14


class DemoService:
    """The coordinator service process of the demo; start it, start it again with other settings, stop it."""

    def __init__(self, settings: CoordinatorSettings, folder: Path) -> None:
        self.settings = settings
        self.log_file = folder / "coordinator.log"
        self.url = settings.public_url
        self.pids: list[int] = []  # every process started, for the record
        self._proc: Any = None
        self._started: int | None = None

    @classmethod
    def configure(cls, folder: Path, chain: Chain, admin: LocalAccount, coordinator: LocalAccount,
                  manifest: Path, model_dir: Path) -> DemoService:
        """Write the coordinator's and a new, admin-funded relayer's keystores and settle the settings.

        Parameters:
            folder: where the keystores, the database and the log go.
            chain: the chain; the admin pays the relayer's gas money on it.
            coordinator: the key holding the COORDINATOR role.
            manifest, model_dir: the deployment manifest and where the study models go.
        """
        folder.mkdir(parents=True, exist_ok=True)
        relayer: LocalAccount = Account.create()
        chain.send_value(admin, relayer.address, 10**19)
        for name, key in (("coordinator-key.json", coordinator), ("relayer-key.json", relayer)):
            path = folder / name
            path.write_text(json.dumps(Account.encrypt(key.key, PASSPHRASE, iterations=_SCRYPT_N)), encoding="utf-8")
            path.chmod(0o600)
        port = free_port()
        settings = CoordinatorSettings(
            rpc_url=chain.rpc_url, manifest=manifest, key_file=folder / "coordinator-key.json",
            relayer_key_file=folder / "relayer-key.json", passphrase=SecretStr(PASSPHRASE), model_dir=model_dir,
            database_url=f"sqlite:///{(folder / 'coordinator.sqlite').resolve()}", host=HOST, port=port,
            public_url=f"http://{HOST}:{port}", sign_in_rate=_SIGN_IN_RATE, flwr_home=folder / "flwr-home",
            log_json=False)
        return cls(settings, folder)

    @property
    def pid(self) -> int | None:
        """The running process's PID, or None."""
        return None if self._proc is None else int(self._proc.pid)

    def start(self, timeout: float = 60.0, **changes: Any) -> None:
        """Start the service with ``changes`` to its settings and wait until it answers (see :meth:`launch`)."""
        self.launch(**changes)
        self.wait_ready(timeout)

    def launch(self, **changes: Any) -> None:
        """Start the service process (stopping a running one first) with ``changes`` to its settings; do not wait."""
        from deploy.federation import coordinator_env

        self.stop()
        if changes:
            self.settings = CoordinatorSettings(**{**self.settings.model_dump(), **changes})
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
        env.update(coordinator_env(self.settings))
        env["PYTHONPATH"] = str(_REPO)  # this checkout's code, whichever one the venv was installed from
        self._proc = spawn([sys.executable, "-m", "coordinator.cli", "serve"], self.log_file, env=env)
        self._started = start_time(self._proc.pid)
        self.pids.append(self._proc.pid)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until the launched service answers ``/v1/health``.

        Raises:
            ServiceStartError: it exited or did not answer within ``timeout`` seconds (its log is quoted);
                it is stopped then.
        """
        if self._proc is None:
            raise ServiceStartError("the coordinator service was not launched")
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise ServiceStartError(f"the coordinator service exited with {self._proc.returncode}:\n"
                                        f"{tail(self.log_file)}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceStartError(f"the coordinator service did not answer {self.url}/v1/health within "
                                        f"{timeout:.0f} s:\n{tail(self.log_file)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the process by its PID (SIGTERM, SIGKILL after 10 s); stopping twice is harmless."""
        if self._proc is not None:
            stop_tree(self._proc.pid, timeout=10.0, started=self._started)
            self._proc = None
