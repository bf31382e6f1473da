"""The managed SuperLink lives and dies with the coordinator service, and its state outlives both.

Each test runs its own service (``python -m coordinator.cli serve``, METAI_COORDINATOR_SUPERLINK=managed)
on free 127.0.0.1 ports and ends it the way an operator or a bad day would: SIGTERM, or SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts.exchange import Exchange
from coordinator.federated.tls import make_ca, write_certificate
from deploy.process import descendants, start_time
from tests.conftest import Actors
from tests.coordinator.managed_service import ManagedService, hospital_key


@pytest.fixture
def service(tmp_path: Path, exchange: Exchange, actors: Actors) -> Iterator[ManagedService]:
    running = ManagedService(tmp_path / "managed", exchange, actors)
    running.start()
    yield running
    running.stop()


def _alive(pid: int, started: int | None) -> bool:
    return started is not None and start_time(pid) == started


def _listened(port: int) -> bool:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def test_stopping_the_service_stops_the_superlink_the_gateway_and_their_children(service: ManagedService) -> None:
    superlink, gateway = service.child(b"flower-superlink"), service.child(b"coordinator.federated.gateway")
    assert superlink is not None
    assert gateway is not None
    family = [(pid, start_time(pid)) for pid in (superlink, gateway)] + list(descendants(superlink))
    assert len(family) >= 3, family  # the SuperLink's SuperExec among them
    service.stop()
    assert [pid for pid, started in family if _alive(pid, started)] == []
    assert not _listened(service.superlink_port)
    assert not _listened(service.fleet_port)


def test_a_killed_service_starts_again_on_the_superlinks_state(service: ManagedService, actors: Actors) -> None:
    operator = service.sign_in(actors.coordinator)
    hospital = hospital_key(service.root, "general")
    registered = httpx.post(f"{service.url}/v1/supernodes", headers=operator,
                            json={"name": hospital.name, "public_key": hospital.public_line})
    assert registered.status_code == 201, registered.text
    superlink = service.child(b"flower-superlink")
    assert superlink is not None
    assert service.proc is not None
    left = (superlink, start_time(superlink))
    gateway = service.child(b"coordinator.federated.gateway")
    assert gateway is not None
    gateway_started = start_time(gateway)

    os.kill(service.proc.pid, signal.SIGKILL)
    service.proc.wait(10)
    deadline = time.monotonic() + 30
    while _alive(gateway, gateway_started):  # it asked Linux for SIGTERM when its parent dies
        assert time.monotonic() < deadline, "the gateway outlived the killed service"
        time.sleep(0.2)
    assert _alive(*left)  # nothing tells a SuperLink its parent died: the next start must stop it
    service.start()  # on the same port: it would not start while the old one holds it

    assert not _alive(*left)
    assert service.child(b"flower-superlink") not in (None, superlink)
    listed = httpx.get(f"{service.url}/v1/supernodes", headers=service.sign_in(actors.coordinator)).json()
    assert [(n["node_id"], n["name"], n["status"]) for n in listed] == [
        (registered.json()["node_id"], "general", "registered")]


def test_a_gateway_certificate_of_another_ca_stops_the_start_with_one_error(tmp_path: Path, exchange: Exchange,
                                                                            actors: Actors) -> None:
    service = ManagedService(tmp_path / "managed", exchange, actors)
    write_certificate(make_ca("Another CA", days=30).certificate, tmp_path / "other-ca.pem")
    env = {**service.env, "METAI_COORDINATOR_FLEET_CA": str(tmp_path / "other-ca.pem")}
    done = subprocess.run([sys.executable, "-m", "coordinator.cli", "serve"], env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert f"METAI_COORDINATOR_FLEET_CERT {service.certs['cert']} was not issued by the CA" in errors[0]
    assert not _listened(service.superlink_port)
    assert not (service.superlink_dir / "superlink.db").exists()
