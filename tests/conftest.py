"""Shared fixtures: a real Anvil chain for the session, a fresh deployment per test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.chain import Chain
from contracts.errors import ContractRevert
from contracts.exchange import Exchange
from contracts.reverts import revert_class
from contracts.roles import Role
from deploy.anvil import AnvilNode, start_anvil, stop_anvil
from deploy.deployer import deploy_contracts


@dataclass(frozen=True)
class Actors:
    """Funded keys playing each part."""

    admin: LocalAccount
    hospital: LocalAccount
    hospital2: LocalAccount
    outsider_hospital: LocalAccount  # a hospital the studies below do not name
    researcher: LocalAccount
    coordinator: LocalAccount
    patients: tuple[LocalAccount, ...]
    stranger: LocalAccount  # holds no role


@pytest.fixture(scope="session")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    node = start_anvil(tmp_path_factory.mktemp("anvil"))
    yield node
    stop_anvil(node)


@pytest.fixture(scope="session")
def chain(anvil: AnvilNode) -> Chain:
    return Chain(anvil.rpc_url)


@pytest.fixture(scope="session")
def actors(anvil: AnvilNode, chain: Chain) -> Actors:
    admin = Account.from_key(anvil.dev_keys[0])
    fresh = [Account.create() for _ in range(14)]
    for account in fresh:
        chain.send_value(admin, account.address, 10**18)
    return Actors(
        admin=admin,
        hospital=fresh[0],
        hospital2=fresh[1],
        outsider_hospital=fresh[2],
        researcher=fresh[3],
        coordinator=fresh[4],
        stranger=fresh[5],
        patients=tuple(fresh[6:]),
    )


@pytest.fixture
def exchange(chain: Chain, actors: Actors) -> Exchange:
    """A fresh deployment with the usual roles granted."""
    deployment = deploy_contracts(
        chain,
        actors.admin,
        initial_roles=[
            (Role.HOSPITAL, actors.hospital.address),
            (Role.HOSPITAL, actors.hospital2.address),
            (Role.HOSPITAL, actors.outsider_hospital.address),
            (Role.RESEARCHER, actors.researcher.address),
            (Role.COORDINATOR, actors.coordinator.address),
        ],
    )
    return Exchange(chain, deployment)


@pytest.fixture
def now(chain: Chain) -> int:
    """The latest block's timestamp."""
    return int(chain.w3.eth.get_block("latest")["timestamp"])


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


class _RevertExpectation:
    """Context manager asserting a ContractRevert with exact error name and arguments."""

    def __init__(self, error: str, **values: object) -> None:
        self.error = error
        self.values = values
        self.raised: ContractRevert | None = None

    def __enter__(self) -> _RevertExpectation:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        if exc is None:
            pytest.fail(f"expected revert {self.error}, but the call succeeded")
        if not isinstance(exc, ContractRevert):
            return False  # let the unexpected exception propagate
        assert exc.error == self.error, f"expected {self.error}, got {exc}"
        assert isinstance(exc, revert_class(self.error))
        for key, expected in self.values.items():
            assert exc.values[key] == expected, f"{self.error}.{key}: {exc.values[key]!r} != {expected!r}"
        self.raised = exc
        return True


@pytest.fixture
def expect_revert() -> type[_RevertExpectation]:
    """``with expect_revert("Name", arg=value): ...`` asserts the custom error and its arguments."""
    return _RevertExpectation


# ---------------------------------------------------------------------- hospital nodes

NODE_PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def make_node(tmp_path: Path, exchange: Exchange, actors: Actors, chain: Chain):  # type: ignore[no-untyped-def]
    """Factory: a fresh node directory on the test chain, holding the HOSPITAL role and gas money."""
    from contracts.manifest import write_manifest
    from node.node import Node

    manifest = tmp_path / "deployment.json"
    write_manifest(exchange.deployment, manifest)

    def make(name: str = "General Hospital", *, role: bool = True) -> Node:
        node = Node.init(tmp_path / f"node-{name.replace(' ', '-')}", hospital_name=name, rpc_url=chain.rpc_url,
                         manifest=manifest, passphrase=NODE_PASSPHRASE)
        chain.send_value(actors.admin, node.address, 10**18)
        if role:
            exchange.roles.grant(actors.admin, Role.HOSPITAL, node.address)
        return node

    return make
