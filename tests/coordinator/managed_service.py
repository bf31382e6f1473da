"""The coordinator service with a managed SuperLink, run as the real command line for the tests.

``ManagedService`` starts ``python -m coordinator.cli serve`` with ``METAI_COORDINATOR_SUPERLINK=managed``
on free 127.0.0.1 ports: the API, the Fleet gateway (TLS with a certificate for ``coordinator.test``
and 127.0.0.1, made by ``python -m deploy certs``) and the SuperLink behind it. It finds the
service's children from /proc, signs accounts in over HTTP, and starts plain ``flower-supernode``
processes that connect through the gateway the way a hospital's does (:func:`connect_hospital` does
all of a hospital's part: its key registered, its signing agent and SuperNode started).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from coordinator.federated.flower_config import ConfigValue, toml_text
from coordinator.federated.superlink import tool
from coordinator.federated.superlink_process import superlink_env
from deploy.federation import NodeSpec
from deploy.process import free_port, free_ports, read_log, spawn, stop_tree, tail, terminate
from deploy.signers import SignerProcess, start_signer, stop_signer
from deploy.threads import thread_env
from node.federation_key import federation_key, supernode_key_pair
from node.node_config import NodeConfigKey
from tests.conftest import Actors, light_keystore
from tests.coordinator.conftest import PASSPHRASE

REPO = Path(__file__).resolve().parents[2]
DNS_NAME = "coordinator.test"
_NODE_ID = re.compile(r"SuperNode ID: (\d+)")


def make_certificates(folder: Path) -> dict[str, Path]:
    """The consortium CA and the coordinator's certificate for coordinator.test and 127.0.0.1, made as an
    operator makes them (``python -m deploy certs``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for args in (["ca", "--out", str(folder / "ca")],
                 ["server", "--ca", str(folder / "ca"), "--out", str(folder / "coordinator"), "--dns", DNS_NAME,
                  "--ip", "127.0.0.1"]):
        subprocess.run([sys.executable, "-m", "deploy", "certs", *args], env=env, check=True, capture_output=True,
                       timeout=120)
    return {"ca": folder / "ca" / "ca.pem", "cert": folder / "coordinator" / "fleet.pem",
            "key": folder / "coordinator" / "fleet.key"}


@dataclass
class Hospital:
    """A hospital's SuperNode key pair: the private key file and the public key line."""

    name: str
    private_key: Path
    public_line: str


def hospital_key(folder: Path, name: str) -> Hospital:
    """A P-384 key pair made the way ``metai-node federation-key`` makes it."""
    private, line = supernode_key_pair()
    path = folder / f"{name}.key"
    path.write_bytes(private)
    path.chmod(0o600)
    return Hospital(name, path, line)


class ManagedService:
    """One coordinator service process with a managed SuperLink, and a way to start it again on its state."""

    def __init__(self, root: Path, exchange: Exchange, actors: Actors) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.certs = make_certificates(root / "certs")
        manifest = root / "deployment.json"
        write_manifest(exchange.deployment, manifest)
        relayer = Account.create()
        (root / "coordinator-key.json").write_text(light_keystore(actors.coordinator.key, PASSPHRASE))
        (root / "relayer-key.json").write_text(light_keystore(relayer.key, PASSPHRASE))
        self.port, self.fleet_port, self.superlink_port = free_ports(3)
        self.url = f"http://127.0.0.1:{self.port}"
        self.fleet = f"127.0.0.1:{self.fleet_port}"
        self.superlink_dir = root / "superlink"
        self.log = root / "coordinator.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")}
        settings = {
            "RPC_URL": exchange.chain.rpc_url, "MANIFEST": str(manifest), "PASSPHRASE": PASSPHRASE,
            "KEY_FILE": str(root / "coordinator-key.json"), "RELAYER_KEY_FILE": str(root / "relayer-key.json"),
            "PORT": str(self.port), "PUBLIC_URL": self.url, "DATABASE_URL": f"sqlite:///{root / 'coordinator.sqlite'}",
            "MODEL_DIR": str(root / "models"), "FLWR_HOME": str(root / "flwr-home"), "LOG_JSON": "false",
            "SUPERLINK": "managed", "SUPERLINK_PORT": str(self.superlink_port),
            "SUPERLINK_DIR": str(self.superlink_dir),
            "FLEET_HOST": "127.0.0.1", "FLEET_PORT": str(self.fleet_port), "FLEET_CERT": str(self.certs["cert"]),
            "FLEET_KEY": str(self.certs["key"]), "FLEET_CA": str(self.certs["ca"]),
        }
        env.update({f"METAI_COORDINATOR_{k}": v for k, v in settings.items()})
        env["PYTHONPATH"] = str(REPO)
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the service and wait until its health says the SuperLink and the gateway run."""
        self.proc = spawn([sys.executable, "-m", "coordinator.cli", "serve"], self.log, env=self.env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the service exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                health = httpx.get(f"{self.url}/v1/health", timeout=2)
                if health.status_code == 200 and health.json()["superlink_running"] is True:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the service did not answer within 120 s:\n{tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM the service (it stops its children) if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            terminate(self.proc.pid, 30)

    def child(self, marker: bytes) -> int | None:
        """The PID of the service's direct child whose command line holds ``marker`` (None if there is none)."""
        assert self.proc is not None
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            for pid in (task / "children").read_text().split():
                try:
                    if marker in Path(f"/proc/{pid}/cmdline").read_bytes():
                        return int(pid)
                except FileNotFoundError:
                    continue
        return None

    def sign_in(self, account: LocalAccount) -> dict[str, str]:
        """Bearer headers of a fresh session of ``account``."""
        message = httpx.post(f"{self.url}/v1/auth/challenge", json={"address": account.address}).json()["message"]
        signature = account.sign_message(encode_defunct(text=message)).signature.to_0x_hex()
        token = httpx.post(f"{self.url}/v1/auth/sign-in", json={"message": message, "signature": signature}).json()
        return {"Authorization": f"Bearer {token['token']}"}

    def health(self) -> dict[str, Any]:
        """The service's health report."""
        answer: dict[str, Any] = httpx.get(f"{self.url}/v1/health", timeout=5).json()
        return answer


@dataclass
class Node:
    """A running flower-supernode: its process, log and the id the SuperLink activated it under."""

    proc: subprocess.Popen[bytes]
    log: Path
    node_id: int | None


def start_supernode(folder: Path, fleet: str, ca: Path, hospital: Hospital, *, wait: float = 90,
                    node_config: Mapping[str, ConfigValue] | None = None,
                    extra_env: Mapping[str, str] | None = None) -> Node:
    """Start flower-supernode against ``fleet`` (the gateway) with TLS verified against ``ca``; wait until it is
    activated (``node_id`` set) or has exited (``node_id`` None). ``node_config`` is what its ClientApps see."""
    node_dir = folder / f"supernode-{hospital.name}"
    node_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(tool("flower-supernode")), "--superlink", fleet, "--host", "127.0.0.1", "--port", str(free_port()),
           "--isolation", "subprocess", "--root-certificates", str(ca),
           "--auth-supernode-private-key", str(hospital.private_key)]
    if node_config is not None:
        config_file = node_dir / "node-config.toml"
        config_file.write_text(toml_text(dict(node_config)), encoding="utf-8")
        cmd += ["--node-config", str(config_file)]
    log = node_dir / "supernode.log"
    proc = spawn(cmd, log, env=superlink_env(node_dir / "flwr-home", extra_env))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if found := _NODE_ID.search(read_log(log)):
            return Node(proc, log, int(found.group(1)))
        if proc.poll() is not None:
            return Node(proc, log, None)
        time.sleep(0.2)
    stop_tree(proc.pid, (), 5)
    raise AssertionError(f"the SuperNode neither started nor exited within {wait} s:\n{tail(log)}")


def connect_hospital(service: ManagedService, operator: Mapping[str, str], spec: NodeSpec,
                     folder: Path) -> tuple[SignerProcess, Node]:
    """A hospital's part, as on its own host: its SuperNode key made on its node and registered through the service's
    route, its signing agent started, its SuperNode (one torch thread) connected through the gateway; the caller
    stops both."""
    name, key = spec.supernode_name(), federation_key(spec.node_dir)
    registered = httpx.post(f"{service.url}/v1/supernodes", headers=dict(operator),
                            json={"name": name, "public_key": key.public_line})
    assert registered.status_code == 201, registered.text
    assert spec.passphrase_file is not None
    signer = start_signer(spec.node_dir, spec.passphrase_file, folder / f"signer-{name}.log", name)
    try:
        node = start_supernode(folder / "hospitals", service.fleet, service.certs["ca"],
                               Hospital(name, key.private_key, key.public_line), extra_env=thread_env(1),
                               node_config={**spec.node_config(), NodeConfigKey.SIGNER_SOCKET: str(signer.socket)})
        assert node.node_id is not None, node.log.read_text()[-3000:]
    except BaseException:
        stop_signer(signer)
        raise
    return signer, node
