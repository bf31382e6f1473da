"""The coordinator service under test: built over the session's chain, on SQLite and on PostgreSQL.

``service`` builds the real service (chain client, database with its migrations, both keys
unlocked, the relay) and serves it in process through Starlette's TestClient. The relay does
not run in the background there: tests call ``relay.step()`` so that what a test sees does not
depend on a thread's timing. tests/coordinator/test_service_kill.py runs the real command line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct, encode_typed_data
from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from coordinator.core.config import CoordinatorSettings
from coordinator.main import create_app
from coordinator.service import Services
from tests.conftest import Actors, light_keystore

PASSPHRASE = "coordinator test passphrase"
PUBLIC_URL = "http://testserver"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind the service supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'coordinator.sqlite'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@dataclass
class Harness:
    """The running service, its client and what the tests need to act as its users."""

    services: Services
    client: TestClient
    exchange: Exchange
    settings: CoordinatorSettings

    def new_client(self) -> TestClient:
        """Another client (own cookies) of the same app."""
        return TestClient(self.client.app, base_url=PUBLIC_URL)

    def sign_in(self, account: LocalAccount, client: TestClient | None = None) -> dict[str, Any]:
        """Sign ``account`` in through the API; the client keeps the cookie, the answer holds the tokens."""
        client = client or self.client
        challenge = client.post("/v1/auth/challenge", json={"address": account.address})
        assert challenge.status_code == 201, challenge.text
        message = challenge.json()["message"]
        signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        session = client.post("/v1/auth/sign-in", json={"message": message, "signature": signature})
        assert session.status_code == 201, session.text
        body: dict[str, Any] = session.json()
        return body

    def bearer(self, account: LocalAccount) -> dict[str, str]:
        """Authorization headers of a fresh bearer session of ``account`` (made with its own client)."""
        token = self.sign_in(account, self.new_client())["token"]
        return {"Authorization": f"Bearer {token}"}


def sign_typed(account: LocalAccount, typed: dict[str, Any]) -> str:
    """Sign EIP-712 typed data as a wallet's eth_signTypedData_v4 does; the signature as hex."""
    return account.sign_message(encode_typed_data(full_message=typed)).signature.to_0x_hex()


def make_service(exchange: Exchange, actors: Actors, root: Path, database_url: str,
                 **overrides: Any) -> tuple[Services, CoordinatorSettings]:
    """Build the service's parts over ``exchange``: manifest, keystores (a funded relayer), settings."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = root / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    relayer = Account.create()
    exchange.chain.send_value(actors.admin, relayer.address, 10**19)
    (root / "coordinator-key.json").write_text(light_keystore(actors.coordinator.key, PASSPHRASE))
    (root / "relayer-key.json").write_text(light_keystore(relayer.key, PASSPHRASE))
    values: dict[str, Any] = {
        "rpc_url": exchange.chain.rpc_url, "manifest": manifest, "key_file": root / "coordinator-key.json",
        "relayer_key_file": root / "relayer-key.json", "passphrase": PASSPHRASE, "database_url": database_url,
        "model_dir": root / "models", "public_url": PUBLIC_URL, "relay_wait": 0.0, "chain_lag": 0.0, **overrides}
    settings = CoordinatorSettings(**values)
    return Services.build(settings), settings


@pytest.fixture
def service_factory(exchange: Exchange, actors: Actors, tmp_path: Path,
                    database_url: str) -> Iterator[Callable[..., Harness]]:
    """Build the service with settings overridden (each call a new service on the same database)."""
    made: list[tuple[Services, TestClient]] = []

    def build(**overrides: Any) -> Harness:
        services, settings = make_service(exchange, actors, tmp_path / f"service-{len(made)}", database_url,
                                          **overrides)
        client = TestClient(create_app(services, run_relay=False), base_url=PUBLIC_URL)
        client.__enter__()
        made.append((services, client))
        return Harness(services, client, exchange, settings)

    yield build
    for services, client in made:
        client.__exit__(None, None, None)
        services.close()


@pytest.fixture
def service(service_factory: Callable[..., Harness]) -> Harness:
    """The service with its default settings."""
    return service_factory()


@dataclass
class LiveService:
    """The service on a real loopback port (uvicorn in a thread), for clients that speak HTTP themselves."""

    url: str
    services: Services
    harness: Harness


@contextmanager
def serve_live(exchange: Exchange, actors: Actors, root: Path, *, run_relay: bool = False,
               **overrides: Any) -> Iterator[LiveService]:
    """The service (SQLite) served by uvicorn on a free 127.0.0.1 port while the block runs; with ``run_relay``
    the consent relay sends in the background as in production; ``overrides`` are settings."""
    import threading
    import time

    import uvicorn

    from deploy.process import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    services, settings = make_service(exchange, actors, root / "live", f"sqlite:///{root / 'live.sqlite'}",
                                      public_url=url, **overrides)
    app = create_app(services, run_relay=run_relay)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, name="live-coordinator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the coordinator service did not start within 30 s"
        time.sleep(0.02)
    client = TestClient(app, base_url=PUBLIC_URL)
    try:
        yield LiveService(url, services, Harness(services, client, exchange, settings))
    finally:
        server.should_exit = True
        thread.join(30)
        services.close()


@pytest.fixture
def live_service(exchange: Exchange, actors: Actors, tmp_path: Path) -> Iterator[LiveService]:
    """The service (SQLite) served by uvicorn on a free 127.0.0.1 port until the test ends."""
    with serve_live(exchange, actors, tmp_path) as live:
        yield live


@pytest.fixture
def sealed_live_service(exchange: Exchange, actors: Actors, tmp_path: Path) -> Iterator[LiveService]:
    """The service (SQLite) in sealed proof mode, served by uvicorn on a free 127.0.0.1 port until the test ends."""
    with serve_live(exchange, actors, tmp_path, proof_mode="sealed") as live:
        yield live
