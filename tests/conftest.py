"""Shared fixtures: a real Anvil chain for the session, one deployment of the contracts on it, and
a clean chain for every test.

``--evm hardhat`` starts Hardhat's network in Anvil's place and deploys the contracts with the
deploy command line (``python -m deploy contracts``), as an operator deploys to any endpoint:
tests/test_second_evm.py runs the subset of the suite listed in docs/chains.md that way.

The contracts are deployed once per session (per xdist worker: each worker has its own Anvil);
each test gets the chain as it was before the test through Anvil's ``evm_snapshot`` /
``evm_revert``, which restores balances, nonces, storage, block number and the clock (so a test
that moves time with ``evm_increaseTime`` leaves the next test at the real time; on Hardhat's
network :func:`deploy.devchain.revert_to` puts the clock back, which its ``evm_revert`` does
not). Nothing on the
client side needs resetting: :class:`contracts.chain.Chain` reads nonces from the chain for each
transaction and caches only the names of contract addresses, which a revert does not change.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, settings

from contracts.chain import Chain
from contracts.errors import ContractRevert
from contracts.exchange import Exchange
from contracts.reverts import revert_class
from contracts.roles import Role
from deploy.anvil import AnvilNode, start_anvil, stop_anvil
from deploy.deployer import deploy_contracts
from deploy.devchain import revert_to, rpc, snapshot
from deploy.hardhat import start_hardhat, stop_hardhat
from deploy.netns import NETWORK as LAB_NETWORK

if TYPE_CHECKING:
    from node.node import Node

pytest_plugins = ["tests.postgres_fixture"]  # `postgres`: the session's server; `postgres_url`: a database per test

# The suite runs three workers on two cores beside chains, services and browsers: a draw that took a
# second because the machine was busy says nothing about a strategy, so that health check is off.
# Deadlines are off for the same reason (a timing is never a test's verdict here).
settings.register_profile("suite", suppress_health_check=[HealthCheck.too_slow], deadline=None)
settings.load_profile("suite")


# ---------------------------------------------------------------------- no traffic beyond loopback

# Tests talk to the services they start on 127.0.0.1 (and, to check a refusal, to this machine's
# own address) and to nothing else. A library that reaches for the internet (pydicom fetches the
# test files it lacks from GitHub, Flower posts telemetry) gets the answer of an offline machine,
# and the test or the collection that tried fails, naming the host.
_RESOLVE = socket.getaddrinfo
_OUTSIDE: list[str] = []
# A multi-host test works inside the hosts of a deploy.netns lab (Lab.inside): there, and only
# there, the lab's private range is reachable, and nothing in it leaves the lab's namespaces.
_HOME_NETNS = os.stat("/proc/thread-self/ns/net").st_ino


def _in_a_lab(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address in LAB_NETWORK and os.stat("/proc/thread-self/ns/net").st_ino != _HOME_NETNS


def _on_this_machine(host: object) -> bool:
    """Whether ``host`` is a loopback name or address, or an address of this machine's own."""
    if host is None:
        return True
    name = (host.decode() if isinstance(host, bytes) else str(host)).strip("[]")
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.split("%")[0])
    except ValueError:
        return False  # a name: resolving it asks a DNS server
    if address.is_loopback or _in_a_lab(address):
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:  # only an address of this machine can be bound
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def _resolve_on_this_machine(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if not _on_this_machine(host):
        _OUTSIDE.append(str(host))
        raise socket.gaierror(socket.EAI_NONAME, f"{host}: the tests resolve loopback names only")
    return _RESOLVE(host, *args, **kwargs)


socket.getaddrinfo = _resolve_on_this_machine


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Workers for ``-n auto``: three for every two cores.

    With one worker per core the suite kept the two cores of a CI machine 76 % busy (a clean run:
    2600 s of CPU in 1719 s of pytest): much of a federated test is waiting, on Flower's
    heartbeats, the pauses between rounds, services starting in other processes. A third worker
    fills those waits.
    """
    cores = len(os.sched_getaffinity(0))
    return max(1, cores * 3 // 2)


def pytest_collection_finish(session: pytest.Session) -> None:
    if _OUTSIDE:
        raise pytest.UsageError(f"collecting the tests tried to reach {sorted(set(_OUTSIDE))}; "
                                "tests send nothing beyond 127.0.0.1")


@pytest.fixture(autouse=True)
def _nothing_beyond_loopback() -> Iterator[None]:
    before = len(_OUTSIDE)
    yield
    assert len(_OUTSIDE) == before, f"the test tried to reach {sorted(set(_OUTSIDE[before:]))}"


@pytest.fixture(autouse=True)
def _umask_put_back() -> Iterator[None]:
    # Code under test may narrow the process's umask (node.private.private_umask, as serve does);
    # the next test in this worker, and every process it starts, gets the umask the worker began with.
    before = os.umask(0o022)
    os.umask(before)
    yield
    os.umask(before)


# ---------------------------------------------------------------------- running on every core

# Under pytest-xdist each worker trains models in its own process. torch starts one OpenMP thread
# per core in each, and busy OpenMP threads of two processes on two cores spin waiting for each
# other (deploy/threads.py). Each worker therefore gets its share of the cores, set before torch is
# imported; the processes a test starts inherit it unless they set their own.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    _SHARE = str(max(1, len(os.sched_getaffinity(0)) // _WORKERS))
    os.environ.update({"OMP_NUM_THREADS": _SHARE, "MKL_NUM_THREADS": _SHARE})

# Modules collected first, costliest first (seconds on two cores, measured with the suite): with
# ``--dist loadscope --no-loadscope-reorder`` (pyproject.toml) workers take modules in collection
# order, so the long ones start at once and the many short ones fill in around them. Longest first
# is the usual greedy rule for spreading jobs over machines; a module missing here only runs later.
COSTLIEST_FIRST = (  # seconds per module, two workers, clean clone, 2026-12-02 (junit report)
    "tests/multihost/test_consortium.py",  # 309
    "tests/deploy/test_demo.py",  # 176
    "tests/test_cli_errors.py",  # 170
    "tests/federated/test_audit_random.py",  # 168
    "tests/deploy/test_flower_worker.py",  # 163
    "tests/tasks/test_learning.py",  # 154
    "tests/federated/test_study_e2e.py",  # 150
    "tests/node/test_ingest_kill.py",  # 149
    "tests/federated/test_study_tls_e2e.py",  # 131
    "tests/federated/test_backup_restore_round.py",  # 109
    "tests/test_second_evm.py",  # 106
    "tests/federated/test_worker_runs.py",  # 98
    "tests/node/test_serve.py",  # 95
    "tests/coordinator/test_launch_resume.py",  # 87
    "tests/tasks/test_robustness_report.py",  # 78
    "tests/federated/test_audit.py",  # 74
    "tests/coordinator/test_service_kill.py",  # 52
    "tests/deploy/test_flower.py",  # 49
    "tests/deploy/test_federation.py",  # 47
    "tests/federated/test_simulation.py",  # 42
    "tests/node/test_serve_settings.py",  # 42
    "tests/coordinator/test_model_card.py",  # 40
    "tests/node/test_ingest_fuzz.py",  # 40
    "tests/coordinator/test_managed_superlink.py",  # 36
    "tests/coordinator/test_managed_lifecycle.py",  # 36
    "tests/coordinator/test_federation_edges.py",  # 33
    "tests/node/test_serve_restart.py",  # 29
    "tests/audit/test_consent_replay.py",  # 28
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the modules of :data:`COSTLIEST_FIRST` first, in its order; keep every other order."""
    root = Path(__file__).resolve().parent.parent
    rank = {(root / name).resolve(): index for index, name in enumerate(COSTLIEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.resolve(), len(rank)))  # stable: modules stay whole


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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--evm", choices=("anvil", "hardhat"), default="anvil",
                     help="the chain the session's `anvil` fixture starts: Anvil (default) or Hardhat's network "
                     "(docs/chains.md lists the tests that run on both)")


def hardhat_selected(config: pytest.Config) -> bool:
    """Whether this session runs on Hardhat's network (``--evm hardhat``) instead of Anvil."""
    return config.getoption("--evm") == "hardhat"


@pytest.fixture(scope="session")
def anvil(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilNode]:
    """The session's local chain: Anvil, or Hardhat's network under ``--evm hardhat``.

    Both have the fields the tests use (``rpc_url``, ``chain_id``, ``dev_keys``, ``pid``). On
    Hardhat the name the chain gives itself (``web3_clientVersion``) is recorded as the test
    suite property ``evm`` of a JUnit report, so a report shows which chain its tests ran on.
    """
    if hardhat_selected(request.config):
        hardhat = start_hardhat(tmp_path_factory.mktemp("hardhat"))
        request.getfixturevalue("record_testsuite_property")("evm", rpc(hardhat.rpc_url, "web3_clientVersion"))
        yield hardhat  # type: ignore[misc]  # a HardhatNode stands in: the same fields
        stop_hardhat(hardhat)
        return
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


@pytest.fixture(scope="session")
def deployed_exchange(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, chain: Chain,
                      actors: Actors) -> Exchange:
    """The contracts, deployed once for the session with the usual roles granted.

    On Hardhat (``--evm hardhat``) by the deploy command line in a process of its own
    (:func:`deploy_with_cli`); on Anvil by the function that command calls.
    Tests use :func:`exchange` (or :func:`module_exchange`), which put the chain back afterwards.
    """
    if hardhat_selected(request.config):
        return deploy_with_cli(chain, actors, tmp_path_factory.mktemp("deploy-cli"))
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


def deploy_with_cli(chain: Chain, actors: Actors, run_dir: Path) -> Exchange:
    """Deploy the contracts to ``chain`` with ``python -m deploy contracts`` as an operator would, the
    usual roles granted through its settings, and connect to them through the manifest it writes.

    The command runs in ``run_dir`` (no ``.env`` there) with only these ``METAI_*`` variables set.

    Raises:
        AssertionError: the command failed (its output is quoted).
    """
    import subprocess
    import sys

    from contracts.manifest import read_manifest

    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
    env.update({
        "METAI_RPC_URL": chain.rpc_url, "METAI_ADMIN_KEY": actors.admin.key.to_0x_hex(),
        "METAI_RUN_DIR": str(run_dir),
        "METAI_HOSPITALS": ",".join(a.address for a in (actors.hospital, actors.hospital2, actors.outsider_hospital)),
        "METAI_RESEARCHERS": actors.researcher.address, "METAI_COORDINATOR": actors.coordinator.address,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
    })
    done = subprocess.run([sys.executable, "-m", "deploy", "contracts"], cwd=run_dir, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, f"`python -m deploy contracts` exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return Exchange(chain, read_manifest(run_dir / "deployment.json"))


@contextmanager
def chain_restored(anvil: AnvilNode) -> Iterator[None]:
    """Put the chain back as it was on entry when the block exits (``evm_snapshot`` / ``evm_revert``).

    Snapshots nest: a module's state can be built inside one, and each of its tests inside another.
    """
    mark = snapshot(anvil.rpc_url)
    try:
        yield
    finally:
        revert_to(anvil.rpc_url, mark)


@pytest.fixture
def exchange(anvil: AnvilNode, deployed_exchange: Exchange) -> Iterator[Exchange]:
    """The deployment with the usual roles granted, as freshly deployed: what a test changes on
    the chain is undone after it."""
    with chain_restored(anvil):
        yield deployed_exchange


@pytest.fixture(scope="module")
def module_exchange(anvil: AnvilNode, deployed_exchange: Exchange) -> Iterator[Exchange]:
    """The deployment for state a whole module builds once (e.g. hospitals with ingested data);
    undone when the module ends. Tests that also take :func:`exchange` get their own changes undone
    after each test, back to the module's state."""
    with chain_restored(anvil):
        yield deployed_exchange


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

#: scrypt cost (n) of the keystores the tests make for themselves: 2**12, about 12 ms to unlock,
#: where a production keystore (eth-account's default, 2**18) takes 0.75 s. Each unlock in a
#: test, a ClientApp round or a command line under test would pay that, about 140 times a suite;
#: like the fast password hashers of web frameworks' test settings, the format and the checks are
#: the same, only the work factor differs. What production writes is pinned by
#: tests/node/test_keys.py, which unlocks a keystore made by ``Node.init`` itself.
TEST_SCRYPT_N = 2**12


def light_keystore(key: bytes, passphrase: str) -> str:
    """A standard v3 (scrypt) keystore of ``key``, as JSON, at the tests' work factor."""
    return json.dumps(Account.encrypt(key, passphrase, iterations=TEST_SCRYPT_N))


def lighten_node_key(node_dir: Path, passphrase: str = NODE_PASSPHRASE) -> None:
    """Re-encrypt the hospital key of the node in ``node_dir`` at :data:`TEST_SCRYPT_N`, in place
    (the file keeps its mode): the same key and address, cheaper to unlock."""
    from node.keys import KEY_FILE, load_key

    path = node_dir / KEY_FILE
    key = load_key(node_dir, passphrase).key
    with open(path, "w", encoding="utf-8") as out:
        out.write(light_keystore(key, passphrase))


class BlankNodes:
    """Empty nodes made by ``Node.init`` on the session's chain, once each, to be copied.

    ``Node.init`` spends most of a second of CPU on the keystore's scrypt (n = 2**18); about 150
    tests each want a fresh node. A copy of an empty node is what ``init`` would have made, with
    the key and secrets of that blank (the key re-encrypted at :data:`TEST_SCRYPT_N`): the n-th
    node a factory makes is a copy of blank n, so the nodes of one test (or one module) all
    differ, and what a test did with its nodes on the chain is undone after it (``exchange``,
    ``module_exchange``) before the next one copies them again.
    Function-scoped and module-scoped factories copy from separate pools, so a module's shared
    nodes never share a key with the nodes its tests make.
    """

    def __init__(self, root: Path, chain: Chain, exchange: Exchange) -> None:
        from contracts.manifest import write_manifest

        self.root = root
        self.chain = chain
        self.manifest = root / "deployment.json"
        write_manifest(exchange.deployment, self.manifest)

    def copy(self, pool: str, index: int, target: Path, name: str) -> Node:
        """A fresh node in ``target`` named ``name``: a copy of blank ``index`` of ``pool``."""
        import dataclasses

        from node.config import NodeInfo
        from node.node import Node

        blank = self.root / f"{pool}-{index}"
        if not blank.exists():
            made = Node.init(blank, hospital_name="Blank", rpc_url=self.chain.rpc_url, manifest=self.manifest,
                             passphrase=NODE_PASSPHRASE)
            made.sessions.kw["bind"].dispose()  # the empty catalog whole in its file, no WAL to copy
            lighten_node_key(blank)
        shutil.copytree(blank, target)  # modes kept: 0700 directory, 0600 files, as init made them
        info = dataclasses.replace(NodeInfo.load(target), hospital_name=name)
        with open(target / "node.json", "w", encoding="utf-8") as out:  # rewritten in place: its mode stays
            out.write(json.dumps(dataclasses.asdict(info), indent=2) + "\n")
        return Node(target, NODE_PASSPHRASE)


@pytest.fixture(scope="session")
def blank_nodes(tmp_path_factory: pytest.TempPathFactory, chain: Chain, deployed_exchange: Exchange) -> BlankNodes:
    return BlankNodes(tmp_path_factory.mktemp("blank-nodes"), chain, deployed_exchange)


def node_factory(folder: Path, exchange: Exchange, actors: Actors, chain: Chain, blanks: BlankNodes,
                 pool: str) -> Callable[..., Node]:
    """Factory of nodes in ``folder`` on the test chain, holding the HOSPITAL role and gas money."""
    from contracts.manifest import write_manifest

    write_manifest(exchange.deployment, folder / "deployment.json")  # as `metai-node init` was given it
    made = 0

    def make(name: str = "General Hospital", *, role: bool = True) -> Node:
        nonlocal made
        node = blanks.copy(pool, made, folder / f"node-{name.replace(' ', '-')}", name)
        made += 1
        chain.send_value(actors.admin, node.address, 10**18)
        if role:
            exchange.roles.grant(actors.admin, Role.HOSPITAL, node.address)
        return node

    return make


@pytest.fixture
def make_node(tmp_path: Path, exchange: Exchange, actors: Actors, chain: Chain,
              blank_nodes: BlankNodes) -> Callable[..., Node]:
    """Factory: a fresh node directory on the test chain, holding the HOSPITAL role and gas money."""
    return node_factory(tmp_path, exchange, actors, chain, blank_nodes, "test")


@pytest.fixture(scope="module")
def module_make_node(tmp_path_factory: pytest.TempPathFactory, module_exchange: Exchange, actors: Actors,
                     chain: Chain, blank_nodes: BlankNodes) -> Callable[..., Node]:
    """:func:`make_node` for nodes a whole module shares (their chain state lives until the module ends)."""
    return node_factory(tmp_path_factory.mktemp("nodes"), module_exchange, actors, chain, blank_nodes, "module")
