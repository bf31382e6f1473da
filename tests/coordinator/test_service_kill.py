"""Killing the coordinator service (SIGKILL) between accepting consents and their mining loses nothing.

The real command line (``python -m coordinator.cli serve``) runs as a process of its own on a
free loopback port, with the consent relay in a child process of its own; the test signs
patients in over HTTP, has them submit signed grants, kills the service, its relay or both
with SIGKILL at a chosen point, starts again what is needed on the same database and checks
that every grant is mined exactly once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from contracts.events import ConsentGranted, read_events
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from deploy.anvil import AnvilNode, mine, rpc
from deploy.process import free_port, spawn, tail, terminate
from tests.conftest import Actors, light_keystore
from tests.coordinator.conftest import PASSPHRASE, sign_typed

REPO = Path(__file__).resolve().parents[2]
GRANT = {"action": "grant", "scope": {"purpose": "GRU"}, "kinds": ["image"]}


class Server:
    """One coordinator service process and a way to start it again on the same state."""

    def __init__(self, root: Path, env: dict[str, str], port: int) -> None:
        self.root, self.env, self.port = root, env, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = root / "coordinator.log"
        self.proc: Any = None

    def start(self, **settings: str) -> None:
        env = {**self.env, **{f"METAI_COORDINATOR_{k.upper()}": v for k, v in settings.items()}}
        self.proc = spawn([sys.executable, "-m", "coordinator.cli", "serve"], self.log, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"the service did not answer within 60 s:\n{tail(self.log)}")

    def relay_pids(self) -> list[int]:
        """The relay's child processes (the service's children whose command line runs ``coordinator.relay``)."""
        found = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    if b"coordinator.relay" in Path(f"/proc/{pid}/cmdline").read_bytes() and not _gone(int(pid)):
                        found.append(int(pid))
                except FileNotFoundError:
                    pass
        return found

    def relay_pid(self) -> int:
        """The one relay process of the service."""
        pids = self.relay_pids()
        assert len(pids) == 1, f"the service runs {len(pids)} relay processes:\n{tail(self.log)}"
        return pids[0]

    def kill(self, *, relay: bool = True) -> int:
        """SIGKILL the service, and its relay first unless ``relay`` is false; return the relay's pid."""
        child = self.relay_pid()
        if relay:
            os.kill(child, signal.SIGKILL)
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        return child

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc.pid, 10)


@pytest.fixture
def server(exchange: Exchange, actors: Actors, tmp_path: Path) -> Iterator[Server]:
    manifest = tmp_path / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    relayer = Account.create()
    exchange.chain.send_value(actors.admin, relayer.address, 10**19)
    (tmp_path / "coordinator-key.json").write_text(light_keystore(actors.coordinator.key, PASSPHRASE))
    (tmp_path / "relayer-key.json").write_text(light_keystore(relayer.key, PASSPHRASE))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    env.update({
        "PYTHONPATH": str(REPO), "METAI_COORDINATOR_RPC_URL": exchange.chain.rpc_url,
        "METAI_COORDINATOR_MANIFEST": str(manifest),
        "METAI_COORDINATOR_KEY_FILE": str(tmp_path / "coordinator-key.json"),
        "METAI_COORDINATOR_RELAYER_KEY_FILE": str(tmp_path / "relayer-key.json"),
        "METAI_COORDINATOR_PASSPHRASE": PASSPHRASE, "METAI_COORDINATOR_PORT": str(port),
        "METAI_COORDINATOR_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "METAI_COORDINATOR_DATABASE_URL": f"sqlite:///{tmp_path / 'coordinator.sqlite'}",
    })
    running = Server(tmp_path, env, port)
    yield running
    running.stop()


def _sign_in(server: Server, account: LocalAccount) -> dict[str, str]:
    message = httpx.post(f"{server.url}/v1/auth/challenge", json={"address": account.address}).json()["message"]
    signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
    token = httpx.post(f"{server.url}/v1/auth/sign-in", json={"message": message, "signature": signature}).json()
    return {"Authorization": f"Bearer {token['token']}"}


def _submit_all(server: Server, patients: tuple[LocalAccount, ...]) -> list[tuple[dict[str, str], str]]:
    out = []
    for patient in patients:
        headers = _sign_in(server, patient)
        typed = httpx.post(f"{server.url}/v1/consents/typed-data", json=GRANT, headers=headers).json()["typed_data"]
        item = httpx.post(f"{server.url}/v1/consents/signed", headers=headers,
                          json={"typed_data": typed, "signature": sign_typed(patient, typed)})
        assert item.status_code == 202, item.text
        out.append((headers, item.json()["id"]))
    return out


def _states(server: Server) -> dict[str, str]:
    with sqlite3.connect(server.root / "coordinator.sqlite") as db:
        return dict(db.execute("SELECT id, state FROM relay_items").fetchall())


def _wait_for(check: Callable[[], bool], what: str, server: Server, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {timeout} s:\n{tail(server.log)}")


def _grants(exchange: Exchange, patient: str) -> int:
    return sum(1 for e in read_events(exchange.chain, [exchange.consent.address],
                                      from_block=exchange.deployment.deploy_block)
               if isinstance(e, ConsentGranted) and e.patient == patient)


def test_consents_accepted_before_a_sigkill_are_relayed_after_the_restart(
        server: Server, exchange: Exchange, actors: Actors) -> None:
    patients = actors.patients[:5]
    server.start(relay_wait="60")  # the relay holds the part-full batch: everything stays pending
    items = _submit_all(server, patients)
    server.kill()
    assert set(_states(server).values()) == {"pending"}
    server.start(relay_wait="0")
    _wait_for(lambda: set(_states(server).values()) == {"mined"}, "mining every grant", server)
    assert [_grants(exchange, p.address) for p in patients] == [1] * len(patients)
    for headers, item_id in items:
        assert httpx.get(f"{server.url}/v1/consents/relay/{item_id}", headers=headers).json()["state"] == "mined"


def _broadcast(server: Server, anvil: AnvilNode) -> Callable[[], bool]:
    """A check: the relay's one batch is stored as sent and its transaction is in the chain's pool.

    Items are marked sent just before the broadcast; a kill in between would test the case
    "stored, never broadcast" instead of the one meant.
    """
    def check() -> bool:
        if set(_states(server).values()) != {"sent"}:
            return False
        with sqlite3.connect(server.root / "coordinator.sqlite") as db:
            hashes = [h for (h,) in db.execute("SELECT tx_hash FROM relay_batches")]
        return len(hashes) == 1 and rpc(anvil.rpc_url, "eth_getTransactionByHash", hashes) is not None
    return check


def _gone(pid: int) -> bool:
    """Whether process ``pid`` ended (a zombie waiting for its reaper counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@contextmanager
def _one_batch_in_the_pool(server: Server, anvil: AnvilNode, patients: tuple[LocalAccount, ...]) -> Iterator[None]:
    """With the chain mining only when told: start the service, have ``patients`` grant, and wait
    until their one batch is broadcast and waits in the chain's pool; automining again after."""
    rpc(anvil.rpc_url, "evm_setAutomine", [False])
    try:
        server.start(relay_wait="60", relay_batch=str(len(patients)))  # one batch, sent when it is full
        _submit_all(server, patients)
        _wait_for(_broadcast(server, anvil), "sending the batch", server)
        yield
    finally:
        rpc(anvil.rpc_url, "evm_setAutomine", [True])


def _outcome(server: Server, exchange: Exchange, patients: tuple[LocalAccount, ...]) -> tuple[list[int], Any]:
    """Each patient's grants on chain, and the relay's batches: (count, lowest state, highest state)."""
    with sqlite3.connect(server.root / "coordinator.sqlite") as db:
        batches = db.execute("SELECT count(*), min(state), max(state) FROM relay_batches").fetchone()
    return [_grants(exchange, p.address) for p in patients], batches


MINED_ONCE_IN_ONE_BATCH = ([1, 1, 1], (1, "mined", "mined"))


@pytest.mark.parametrize("relay_too", [True, False], ids=["service-and-relay", "service-only"])
def test_a_batch_sent_but_not_mined_at_the_sigkill_is_mined_once_after_the_restart(
        server: Server, anvil: AnvilNode, exchange: Exchange, actors: Actors, relay_too: bool) -> None:
    patients = actors.patients[:3]
    with _one_batch_in_the_pool(server, anvil, patients):
        # The transaction is in the chain's pool, its receipt not yet read. Killed alone, the service
        # leaves its relay an orphan: Linux tells it (SIGTERM) and it must stop, not relay beside the
        # next service's relay.
        relay = server.kill(relay=relay_too)
        if not relay_too:
            _wait_for(lambda: _gone(relay), "the orphaned relay stopping", server, timeout=20)
        server.start(relay_wait="0")
        mine(anvil.rpc_url)
        _wait_for(lambda: set(_states(server).values()) == {"mined"}, "settling the batch", server)
    assert _outcome(server, exchange, patients) == MINED_ONCE_IN_ONE_BATCH


def test_a_relay_process_killed_alone_is_started_again_and_its_batch_mined_once(
        server: Server, anvil: AnvilNode, exchange: Exchange, actors: Actors) -> None:
    patients = actors.patients[:3]
    with _one_batch_in_the_pool(server, anvil, patients):
        first = server.relay_pid()
        os.kill(first, signal.SIGKILL)
        _wait_for(lambda: _gone(first), "the relay dying", server)
        mine(anvil.rpc_url)
        _wait_for(lambda: server.relay_pids() not in ([], [first]), "a new relay process", server, timeout=30)
        _wait_for(lambda: set(_states(server).values()) == {"mined"}, "settling the batch", server)
        assert httpx.get(f"{server.url}/v1/health").json()["relay_running"] is True
        assert "ended unexpectedly" in server.log.read_text()
    assert _outcome(server, exchange, patients) == MINED_ONCE_IN_ONE_BATCH
