"""The coordinator service runs its SuperLink behind the Fleet gateway, and hospitals are let in by key.

One real service (``python -m coordinator.cli serve``, METAI_COORDINATOR_SUPERLINK=managed) runs
for the module on free 127.0.0.1 ports. Hospitals' SuperNodes are plain ``flower-supernode``
processes that reach it only through the gateway, over TLS verified against the consortium CA.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from flwr.proto.control_pb2 import ListNodesRequest, ListNodesResponse
from flwr.proto.node_pb2 import NodeInfo

from contracts.exchange import Exchange
from coordinator.federated.control import ControlClient
from deploy.process import stop_tree, tail
from tests.conftest import Actors
from tests.coordinator.managed_service import (
    DNS_NAME,
    Hospital,
    ManagedService,
    Node,
    hospital_key,
    start_supernode,
)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, module_exchange: Exchange,
            actors: Actors) -> Iterator[ManagedService]:
    running = ManagedService(tmp_path_factory.mktemp("managed"), module_exchange, actors)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def operator(service: ManagedService, actors: Actors) -> dict[str, str]:
    """Bearer headers of the coordinator operator (COORDINATOR role on chain)."""
    return service.sign_in(actors.coordinator)


@pytest.fixture(scope="module")
def general(service: ManagedService, operator: dict[str, str]) -> Iterator[tuple[Hospital, Node]]:
    """Hospital "general": its key registered through the route, its SuperNode connected through the gateway."""
    hospital = hospital_key(service.root, "general")
    registered = httpx.post(f"{service.url}/v1/supernodes", headers=operator,
                            json={"name": hospital.name, "public_key": hospital.public_line + " general@hospital"})
    assert registered.status_code == 201, registered.text
    node = start_supernode(service.root, service.fleet, service.certs["ca"], hospital)
    yield hospital, node
    stop_tree(node.proc.pid, (), 10)


def _gateway(service: ManagedService) -> httpx.Client:
    return httpx.Client(base_url=f"https://{service.fleet}", verify=ssl.create_default_context(
        cafile=str(service.certs["ca"])), trust_env=False)


def _listening(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a socket listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _nodes(service: ManagedService) -> dict[int, NodeInfo]:
    """The SuperLink's own view of its nodes, from its Control API on loopback."""
    with ControlClient(f"127.0.0.1:{service.superlink_port}", service.superlink_dir / "tls" / "ca.pem") as control:
        return {info.node_id: info for info in control.call("list-nodes", ListNodesRequest(), ListNodesResponse)
                .nodes_info}


# ---------------------------------------------------------------------- the gateway and the SuperLink's port


def test_the_superlink_listens_on_loopback_only(service: ManagedService) -> None:
    assert _listening(service.superlink_port) == {"0100007F"}  # 127.0.0.1 in /proc/net/tcp byte order


@pytest.mark.parametrize("path", ["/v1/control/list-nodes", "/v1/control/register-node", "/v1/runtime/pull-messages",
                                  "/v1/control/start-run", "/", "/v1/fleet", "/v1/fleet/pull-messages/extra"])
def test_the_gateway_answers_404_outside_the_fleet_api(service: ManagedService, path: str) -> None:
    with _gateway(service) as gateway:
        answer = gateway.post(path, content=ListNodesRequest().SerializeToString(),
                              headers={"content-type": "application/protobuf"})
    assert (answer.status_code, answer.text) == (404, "not found\n")


@pytest.mark.parametrize("raw", [b"/v1/fleet/../control/list-nodes", b"/v1/fleet/%2e%2e/control/list-nodes",
                                 b"/v1/fleet/%2E%2E%2Fcontrol%2Flist-nodes", b"/v1/fleet/./../runtime/x",
                                 b"//v1/control/list-nodes", b"/v1/fleet/pull-messages%00"])
def test_no_spelling_of_a_path_reaches_another_api(service: ManagedService, raw: bytes) -> None:
    context = ssl.create_default_context(cafile=str(service.certs["ca"]))
    connection = http.client.HTTPSConnection("127.0.0.1", service.fleet_port, context=context, timeout=10)
    connection.putrequest("POST", raw.decode("ascii"), skip_accept_encoding=True)  # sent as it is, not normalized
    connection.putheader("content-type", "application/protobuf")
    connection.putheader("content-length", "0")
    connection.endheaders()
    answer = connection.getresponse()
    assert (answer.status, answer.read()) == (404, b"not found\n")
    connection.close()


def test_the_gateway_forwards_health_and_the_fleet_api(service: ManagedService) -> None:
    with _gateway(service) as gateway:
        health = gateway.get("/health")
        # A Fleet call without a SuperNode's signed headers: the SuperLink itself refuses it.
        unsigned = gateway.post("/v1/fleet/pull-messages", content=b"",
                                headers={"content-type": "application/protobuf"})
    assert health.status_code == 200
    assert unsigned.status_code == 401, unsigned.text
    assert "Invalid SuperNode authentication" in unsigned.text


@pytest.mark.parametrize("name", [DNS_NAME, "127.0.0.1"])
def test_the_gateway_certificate_verifies_for_its_dns_name_and_ip(service: ManagedService, name: str) -> None:
    context = ssl.create_default_context(cafile=str(service.certs["ca"]))
    with socket.create_connection(("127.0.0.1", service.fleet_port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=name) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_the_gateway_certificate_does_not_verify_for_another_name(service: ManagedService) -> None:
    context = ssl.create_default_context(cafile=str(service.certs["ca"]))
    with socket.create_connection(("127.0.0.1", service.fleet_port), timeout=10) as raw, \
            pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        context.wrap_socket(raw, server_hostname="other.test")


def test_the_gateway_is_not_trusted_without_the_consortium_ca(service: ManagedService) -> None:
    with httpx.Client(verify=ssl.create_default_context(), trust_env=False) as client, \
            pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(f"https://{service.fleet}/health")


# ---------------------------------------------------------------------- registering hospitals' keys


def test_a_registered_supernode_is_activated_through_the_gateway(service: ManagedService,
                                                                 general: tuple[Hospital, Node]) -> None:
    _hospital, node = general
    assert node.node_id is not None, tail(node.log)
    assert _nodes(service)[node.node_id].status == "online"


def test_an_unregistered_key_is_refused(service: ManagedService, general: tuple[Hospital, Node]) -> None:
    rogue = start_supernode(service.root, service.fleet, service.certs["ca"], hospital_key(service.root, "rogue"))
    assert rogue.node_id is None
    assert rogue.proc.wait(30) != 0
    assert "Failed to activate SuperNode" in rogue.log.read_text(errors="replace")


def test_registering_the_same_key_again_changes_nothing(service: ManagedService, operator: dict[str, str],
                                                        general: tuple[Hospital, Node]) -> None:
    hospital, node = general
    again = httpx.post(f"{service.url}/v1/supernodes", headers=operator,
                       json={"name": hospital.name, "public_key": hospital.public_line})
    assert again.status_code == 200, again.text
    assert (again.json()["node_id"], again.json()["status"]) == (str(node.node_id), "online")
    listed = httpx.get(f"{service.url}/v1/supernodes", headers=operator).json()
    assert [n["name"] for n in listed].count(hospital.name) == 1


def test_the_same_key_under_another_name_is_refused(service: ManagedService, operator: dict[str, str],
                                                    general: tuple[Hospital, Node]) -> None:
    hospital, node = general
    answer = httpx.post(f"{service.url}/v1/supernodes", headers=operator,
                        json={"name": "st-marys", "public_key": hospital.public_line})
    assert answer.status_code == 409, answer.text
    assert answer.json()["detail"].startswith("the key SHA256:")
    assert f"is registered already as 'general' (node {node.node_id})" in answer.json()["detail"]


@pytest.mark.parametrize(("key", "why"), [
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHm8", "is of type 'ssh-ed25519', expected ecdsa-sha2-nistp384"),
    ("ecdsa-sha2-nistp384 AAAA%%%", "does not decode as ecdsa-sha2-nistp384"),
    ("ecdsa-sha2-nistp384", "is not one line 'ecdsa-sha2-nistp384 AAAA...'"),
    ("-----BEGIN PUBLIC KEY-----\nMHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE\n-----END PUBLIC KEY-----",
     "is not one line"),
])
def test_a_malformed_key_is_refused_with_one_clear_error(service: ManagedService, operator: dict[str, str],
                                                         key: str, why: str) -> None:
    answer = httpx.post(f"{service.url}/v1/supernodes", headers=operator, json={"name": "bad", "public_key": key})
    assert answer.status_code == 422, answer.text
    assert answer.json()["type"] == "urn:metai:problem:invalid-supernode-key"
    assert why in answer.json()["detail"]
    assert "metai-node federation-key" in answer.json()["detail"]


def test_a_p256_key_is_refused(service: ManagedService, operator: dict[str, str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    line = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    answer = httpx.post(f"{service.url}/v1/supernodes", headers=operator, json={"name": "p256", "public_key": line})
    assert answer.status_code == 422, answer.text
    assert "is of type 'ecdsa-sha2-nistp256', expected ecdsa-sha2-nistp384" in answer.json()["detail"]


def test_only_the_operator_or_the_admin_manages_supernodes(service: ManagedService, actors: Actors) -> None:
    stranger = service.sign_in(Account.create())
    answer = httpx.get(f"{service.url}/v1/supernodes", headers=stranger)
    assert answer.status_code == 403, answer.text
    assert answer.json()["type"] == "urn:metai:problem:role-required"
    assert httpx.get(f"{service.url}/v1/supernodes").status_code == 401
    assert httpx.get(f"{service.url}/v1/supernodes", headers=service.sign_in(actors.admin)).status_code == 200


def test_an_unregistered_supernode_is_refused_from_then_on(service: ManagedService, operator: dict[str, str]) -> None:
    hospital = hospital_key(service.root, "leaving")
    node_id = httpx.post(f"{service.url}/v1/supernodes", headers=operator,
                         json={"name": hospital.name, "public_key": hospital.public_line}).json()["node_id"]
    gone = httpx.delete(f"{service.url}/v1/supernodes/{node_id}", headers=operator)
    assert (gone.status_code, gone.json()["status"]) == (200, "unregistered")
    refused = start_supernode(service.root, service.fleet, service.certs["ca"], hospital)
    assert refused.node_id is None
    again = httpx.post(f"{service.url}/v1/supernodes", headers=operator,
                       json={"name": hospital.name, "public_key": hospital.public_line})
    assert again.status_code == 409, again.text
    assert "Flower never admits it again" in again.json()["detail"]


def test_the_cli_registers_a_key_from_a_file_once(service: ManagedService) -> None:
    hospital = hospital_key(service.root, "st-marys")
    key_file = service.root / "st-marys.pub"
    key_file.write_text(hospital.public_line + "\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "coordinator.cli", "supernode", *args], env=service.env,
                              capture_output=True, text=True, timeout=120)

    first, second = cli("register", "st-marys", str(key_file)), cli("register", "st-marys", hospital.public_line)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("registered: SuperNode ")
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("already registered: SuperNode ")
    assert first.stdout.split()[2] == second.stdout.split()[3]  # the same node id
    listed = cli("list")
    assert any(line.split("\t")[1:3] == ["st-marys", "registered"] for line in listed.stdout.splitlines())
    bad = cli("register", "st-marys", "ssh-rsa AAAAB3NzaC1yc2E")
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: the public key is of type 'ssh-rsa'")


# ---------------------------------------------------------------------- a bad day: the SuperLink is killed


def test_a_killed_superlink_is_restarted_and_the_supernode_comes_back(service: ManagedService,
                                                                      general: tuple[Hospital, Node]) -> None:
    _hospital, node = general
    assert node.node_id is not None
    before = _nodes(service)[node.node_id].online_until
    killed = service.child(b"flower-superlink")
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while True:  # the service starts another SuperLink on the same port and state
        restarted = service.child(b"flower-superlink")
        if restarted not in (None, killed) and service.health()["superlink_running"]:
            break
        assert time.monotonic() < deadline, tail(service.log)
        time.sleep(0.5)
    while (after := _nodes(service)[node.node_id]).online_until <= before:  # a heartbeat came through the gateway
        assert time.monotonic() < deadline, tail(node.log)
        time.sleep(1.0)
    assert after.status == "online"
    assert node.proc.poll() is None
    assert "ended unexpectedly with exit status -9" in service.log.read_text()
