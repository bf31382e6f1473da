"""A consortium on five hosts of a deploy.netns lab: the chain, the coordinator and three hospitals.

Every service runs as its real command line in its own host and binds only to that host's
address (or its loopback): Anvil on the chain host; ``metai-coordinator serve`` with its managed
SuperLink (loopback) and Fleet gateway (TLS, a certificate for ``coordinator.lab`` and the
coordinator's address, made by ``python -m deploy certs``) on the coordinator host; ``metai-node
serve`` on each hospital host, reaching the gateway and the chain by address. The test's own
thread works inside the coordinator host (``Lab.inside``), as the operator does: it deploys the
contracts, prepares the hospitals' nodes, registers their SuperNode keys through the service and
starts studies; it enters a hospital's host to ask that hospital's health check.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.roles import Role
from deploy.anvil import AnvilNode, start_anvil
from deploy.deployer import deploy_contracts
from deploy.netns import Lab
from node.node import Node
from tests.conftest import NODE_PASSPHRASE, light_keystore, lighten_node_key
from tests.federated.conftest import populate

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
HOSPITALS = ("h1", "h2", "h3")
DNS_NAME = "coordinator.lab"
COORDINATOR_PASSPHRASE = "coordinator passphrase in the lab"
API_PORT, FLEET_PORT, SUPERLINK_PORT, CHAIN_PORT = 8000, 9092, 9093, 8545
SUPERNODE_PORT, HEALTH_PORT = 9094, 9095
PATIENTS = 12


@dataclass
class HospitalHost:
    """A hospital: its host in the lab, node, patients' keys and the serve running there (if any)."""

    host: str
    node: Node
    patients: dict[str, LocalAccount]
    runtime: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


class Consortium:
    """The five hosts and what runs on them; the caller's thread stays inside the coordinator host."""

    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab = lab
        self.root = root
        self.chain_node: AnvilNode | None = None
        self.coordinator_proc: subprocess.Popen[bytes] | None = None
        self.hospitals: list[HospitalHost] = []

    # ------------------------------------------------------------------ addresses
    @property
    def rpc_url(self) -> str:
        return f"http://{self.lab['chain'].address}:{CHAIN_PORT}"

    @property
    def api(self) -> str:
        return f"http://{self.lab['coord'].address}:{API_PORT}"

    @property
    def fleet(self) -> str:
        return f"{self.lab['coord'].address}:{FLEET_PORT}"

    # ------------------------------------------------------------------ the chain host
    def start_chain(self) -> None:
        with self.lab.inside("chain"):
            self.chain_node = start_anvil(self.root / "chain", host=self.lab["chain"].address, port=CHAIN_PORT,
                                          accounts=2)

    def deploy(self) -> None:
        """Deploy the contracts from the operator's seat with the roles of the people in the study."""
        assert self.chain_node is not None
        self.chain = Chain(self.rpc_url)
        self.admin = Account.from_key(self.chain_node.dev_keys[0])
        self.coordinator, self.researcher, self.relayer = (Account.create() for _ in range(3))
        for account in (self.coordinator, self.researcher, self.relayer):
            self.chain.send_value(self.admin, account.address, 10**19)
        deployment = deploy_contracts(self.chain, self.admin, initial_roles=[
            (Role.RESEARCHER, self.researcher.address), (Role.COORDINATOR, self.coordinator.address)])
        self.exchange = Exchange(self.chain, deployment)
        self.manifest = self.root / "deployment.json"
        write_manifest(deployment, self.manifest)

    # ------------------------------------------------------------------ the hospitals' nodes
    def prepare_hospitals(self) -> None:
        """Each hospital's node (made as `metai-node init` makes it), 12 consenting patients, its SuperNode key."""
        for index, host in enumerate(HOSPITALS):
            node = Node.init(self.root / f"node-{host}", hospital_name=f"Lab Hospital {index + 1}",
                             rpc_url=self.rpc_url, manifest=self.manifest, passphrase=NODE_PASSPHRASE)
            node.sessions.kw["bind"].dispose()
            lighten_node_key(node.dir)
            node = Node(node.dir, NODE_PASSPHRASE)
            self.chain.send_value(self.admin, node.address, 10**19)
            self.exchange.roles.grant(self.admin, Role.HOSPITAL, node.address)
            keys = populate(node, self.root / f"data-{host}", f"LAB-{index + 1}", PATIENTS, seed=7000 + index)
            for key in keys.values():
                self.exchange.consent.relay(self.relayer, self.exchange.consent.sign_grant(
                    key, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY))
            runtime = Path(tempfile.mkdtemp(prefix=f"mh-{host}-"))  # short: it holds a Unix socket
            self.hospitals.append(HospitalHost(host, node, keys, runtime, self.root / f"serve-{host}.log"))

    def federation_key(self, hospital: HospitalHost) -> str:
        """Make the hospital's SuperNode key on its own host (`metai-node federation-key`); its public line."""
        done = self.lab.run(hospital.host, [PYTHON, "-m", "node.cli", "federation-key"],
                            env=self._node_env(hospital), timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def _node_env(self, hospital: HospitalHost) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
        env.update({
            "PYTHONPATH": str(REPO), "METAI_NODE_DIR": str(hospital.node.dir),
            "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE, "METAI_NODE_RPC_URL": self.rpc_url,
            "METAI_NODE_RUNTIME_DIR": str(hospital.runtime),
            "METAI_NODE_SUPERLINK_ADDRESS": self.fleet,
            "METAI_NODE_SUPERLINK_ROOT_CERTIFICATES": str(self.root / "certs" / "ca" / "ca.pem"),
            "METAI_NODE_SUPERNODE_PORT": str(SUPERNODE_PORT), "METAI_NODE_HEALTH_PORT": str(HEALTH_PORT),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        })
        return env

    def start_hospital(self, hospital: HospitalHost) -> None:
        """Start `metai-node serve` on the hospital's host and wait until its health check answers 200."""
        hospital.proc = self.lab.spawn(hospital.host, [PYTHON, "-m", "node.cli", "serve"], hospital.log,
                                       env=self._node_env(hospital))
        self.wait_hospital(hospital)

    def health(self, hospital: HospitalHost) -> tuple[int, dict[str, Any]]:
        """The hospital's serve health answer, asked on its own host's loopback."""
        from node.health import read_health

        with self.lab.inside(hospital.host):
            return read_health(HEALTH_PORT, timeout=10)

    def wait_hospital(self, hospital: HospitalHost, timeout: float = 240) -> dict[str, Any]:
        from node.health import HealthUnavailable

        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert hospital.proc is not None
            if hospital.proc.poll() is not None:
                raise AssertionError(f"serve on {hospital.host} exited with {hospital.proc.returncode}:\n"
                                     f"{_tail(hospital.log)}")
            with contextlib.suppress(HealthUnavailable):
                status, body = self.health(hospital)
                if status == 200:
                    return body
            time.sleep(0.5)
        raise AssertionError(f"serve on {hospital.host} not healthy within {timeout} s: {body}\n{_tail(hospital.log)}")

    # ------------------------------------------------------------------ the coordinator host
    def make_certificates(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for args in (["ca", "--out", str(self.root / "certs" / "ca")],
                     ["server", "--ca", str(self.root / "certs" / "ca"), "--out", str(self.root / "certs" / "coord"),
                      "--dns", DNS_NAME, "--ip", self.lab["coord"].address]):
            subprocess.run([PYTHON, "-m", "deploy", "certs", *args], env=env, check=True, capture_output=True,
                           timeout=120)

    def coordinator_env(self) -> dict[str, str]:
        folder = self.root / "coordinator"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "coordinator-key.json").exists():
            (folder / "coordinator-key.json").write_text(light_keystore(self.coordinator.key, COORDINATOR_PASSPHRASE))
            (folder / "relayer-key.json").write_text(light_keystore(self.relayer.key, COORDINATOR_PASSPHRASE))
        certs = self.root / "certs"
        settings = {
            "RPC_URL": self.rpc_url, "MANIFEST": str(self.manifest), "PASSPHRASE": COORDINATOR_PASSPHRASE,
            "KEY_FILE": str(folder / "coordinator-key.json"), "RELAYER_KEY_FILE": str(folder / "relayer-key.json"),
            "HOST": self.lab["coord"].address, "PORT": str(API_PORT), "PUBLIC_URL": self.api,
            "DATABASE_URL": f"sqlite:///{folder / 'coordinator.sqlite'}", "MODEL_DIR": str(folder / "models"),
            "FLWR_HOME": str(folder / "flwr-home"), "LOG_JSON": "false",
            "SUPERLINK": "managed", "SUPERLINK_PORT": str(SUPERLINK_PORT), "SUPERLINK_DIR": str(folder / "superlink"),
            "FLEET_HOST": self.lab["coord"].address, "FLEET_PORT": str(FLEET_PORT),
            "FLEET_CERT": str(certs / "coord" / "fleet.pem"), "FLEET_KEY": str(certs / "coord" / "fleet.key"),
            "FLEET_CA": str(certs / "ca" / "ca.pem"),
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
        env.update({f"METAI_COORDINATOR_{name}": value for name, value in settings.items()})
        env.update({"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        return env

    @property
    def models(self) -> Path:
        return self.root / "coordinator" / "models"

    def start_coordinator(self, timeout: float = 180) -> None:
        """Start `metai-coordinator serve` on its host; wait until its health says the SuperLink and gateway run."""
        self.coordinator_proc = self.lab.spawn("coord", [PYTHON, "-m", "coordinator.cli", "serve"],
                                               self.root / "coordinator.log", env=self.coordinator_env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.coordinator_proc.poll() is not None:
                raise AssertionError(f"the coordinator exited with {self.coordinator_proc.returncode}:\n"
                                     f"{_tail(self.root / 'coordinator.log')}")
            with contextlib.suppress(httpx.TransportError, ValueError):
                health = httpx.get(f"{self.api}/v1/health", timeout=3)
                if health.status_code == 200 and health.json().get("superlink_running") is True:
                    return
            time.sleep(0.3)
        raise AssertionError(f"the coordinator did not answer within {timeout} s:\n"
                             f"{_tail(self.root / 'coordinator.log')}")

    def sign_in(self, account: LocalAccount) -> dict[str, str]:
        """Bearer headers of a fresh session of ``account`` at the coordinator."""
        message = httpx.post(f"{self.api}/v1/auth/challenge", json={"address": account.address}).json()["message"]
        signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        token = httpx.post(f"{self.api}/v1/auth/sign-in", json={"message": message, "signature": signature}).json()
        return {"Authorization": f"Bearer {token['token']}"}

    # ------------------------------------------------------------------ a bad day
    def kill_host(self, host: str) -> list[int]:
        """SIGKILL every process on ``host`` (a power cut); the PIDs killed."""
        namespace = self.lab[host].namespace
        killed: list[int] = []
        for _ in range(20):
            # This process is listed too while its thread works inside the coordinator host: never itself.
            pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                                   text=True, check=False).stdout.split() if int(p) != os.getpid()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
                    killed.append(pid)
            time.sleep(0.2)
        _wait_released(killed)
        return killed

    def signal_host(self, host: str, sig: int) -> list[int]:
        """Send ``sig`` to every process on ``host`` (SIGSTOP: the host hangs; SIGCONT: it goes on); the PIDs."""
        namespace = self.lab[host].namespace
        pids = [int(p) for p in subprocess.run(["ip", "netns", "pids", namespace], capture_output=True,
                                               text=True, check=False).stdout.split() if int(p) != os.getpid()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return pids

    def close(self) -> None:
        for hospital in self.hospitals:
            with contextlib.suppress(OSError):
                for path in hospital.runtime.rglob("*"):
                    if path.is_file() or path.is_socket():
                        path.unlink()
        self.lab.close()


def _wait_released(pids: list[int], timeout: float = 30) -> None:
    """Wait until each of ``pids`` has exited or is a zombie: its sockets are closed then.

    A SIGKILLed process leaves ``ip netns pids`` once its namespaces are dropped, which the kernel
    does before it closes the files whose release it deferred (a listening socket among them): a
    restart at once can find the port still taken.
    """
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError, IndexError):
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"process {pid} still runs {timeout:g} s after its SIGKILL")


def _tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


@contextlib.contextmanager
def consortium(root: Path) -> Iterator[Consortium]:
    """The lab with the chain and the contracts, the coordinator serving and each hospital's serve running."""
    lab = Lab.create(["chain", "coord", *HOSPITALS])
    made = Consortium(lab, root)
    try:
        made.start_chain()
        with lab.inside("coord"):
            made.deploy()
            made.make_certificates()
            made.prepare_hospitals()
            made.start_coordinator()
            operator = made.sign_in(made.coordinator)
            for index, hospital in enumerate(made.hospitals):
                line = made.federation_key(hospital)
                registered = httpx.post(f"{made.api}/v1/supernodes", headers=operator,
                                        json={"name": f"hospital-{index + 1}", "public_key": line})
                assert registered.status_code == 201, registered.text
                made.start_hospital(hospital)
            yield made
    finally:
        made.close()
