"""The multi-host lab (deploy.netns): hosts reach each other by address and nothing else, and leave nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.netns import NETWORK, PREFIX, Lab, available, sweep

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))
PYTHON = sys.executable


def _namespaces() -> set[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


def _serve(lab: Lab, host: str, address: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """An HTTP server in ``host`` on ``address``, once it listens."""
    port = 8080
    proc = lab.spawn(host, [PYTHON, "-m", "http.server", "--bind", address, str(port)], log)
    deadline = time.monotonic() + 20
    while (address, port) not in lab.listening(host):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return proc, port


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab.create(["chain", "coord", "h1", "h2"]) as made:
        yield made


def test_hosts_reach_each_other_by_address(lab: Lab, tmp_path: Path) -> None:
    _, port = _serve(lab, "coord", lab["coord"].address, tmp_path / "http.log")
    with lab.inside("h1"), socket.create_connection((lab["coord"].address, port), timeout=5) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert conn.recv(12) == b"HTTP/1.0 200"
    assert f"{lab['h1'].address} - - " in (tmp_path / "http.log").read_text()


def test_a_service_on_a_hosts_loopback_is_out_of_the_others_reach(lab: Lab, tmp_path: Path) -> None:
    _, port = _serve(lab, "h1", "127.0.0.1", tmp_path / "http.log")
    with lab.inside("h2"), pytest.raises(ConnectionRefusedError):
        socket.create_connection((lab["h1"].address, port), timeout=5)
    with lab.inside("h1"), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the host itself reaches it


def test_no_host_has_a_route_beyond_the_range(lab: Lab) -> None:
    for name, host in lab.hosts.items():
        routes = lab.run(name, ["ip", "-j", "route", "show", "table", "all"]).stdout
        destinations = {r["dst"] for r in json.loads(routes) if r.get("table") != "local"}
        assert destinations <= {str(NETWORK), "multicast ff00::/8", "fe80::/64", "ff00::/8"}, (name, destinations)
        assert host.address in lab.run(name, ["ip", "-4", "addr", "show", "eth0"]).stdout


def test_the_machines_own_namespace_holds_none_of_it(lab: Lab) -> None:
    addresses = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert "198.18.77." not in addresses
    assert "br0" not in links
    assert "veth" not in links


def test_close_kills_what_runs_and_removes_every_namespace(tmp_path: Path) -> None:
    lab = Lab.create(["a", "b"])
    made = {h.namespace for h in lab.hosts.values()} | {lab.switch}
    proc = lab.spawn("a", ["sleep", "600"], tmp_path / "sleep.log")
    lab.close()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert not made & _namespaces()


def test_a_spawned_process_is_in_its_host_when_spawn_returns(lab: Lab, tmp_path: Path) -> None:
    # What close() finds to kill is what the namespace lists: a process still on its way in (inside
    # `ip netns exec`, before setns) was missed on a busy machine and outlived the lab.
    namespace = lab.hosts["h1"].namespace
    inside = f"net:[{os.stat(f'/run/netns/{namespace}').st_ino}]"
    for n in range(20):
        proc = lab.spawn("h1", ["sleep", "600"], tmp_path / f"sleep-{n}.log")
        try:
            assert os.readlink(f"/proc/{proc.pid}/ns/net") == inside, n  # read at once, before anything else
        finally:
            proc.kill()
            proc.wait()


def test_a_lab_whose_maker_was_killed_is_swept(tmp_path: Path) -> None:
    maker = subprocess.Popen([PYTHON, "-c", "import sys, time; from deploy.netns import Lab; "
                              "lab = Lab.create(['x', 'y']); print(lab.switch, flush=True); time.sleep(600)"],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    assert maker.stdout is not None
    switch = maker.stdout.readline().strip()
    left = {name for name in _namespaces() if name.startswith(f"{PREFIX}{maker.pid}-")}
    assert switch in left
    assert len(left) == 3
    os.kill(maker.pid, signal.SIGKILL)
    maker.wait(timeout=10)
    assert left <= set(sweep())
    assert not left & _namespaces()


def test_host_names_are_checked() -> None:
    with pytest.raises(ValueError, match="host name 'Hospital-1'"):
        Lab.create(["Hospital-1"])
    with pytest.raises(ValueError, match="repeat"):
        Lab.create(["a", "a"])
