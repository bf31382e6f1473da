"""The consortium CA and the coordinator's Fleet certificate: made by ``python -m deploy certs``, checked at start."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator.errors import CoordinatorConfigError
from coordinator.federated.tls import check_server_files, make_ca, make_server_certificate, write_issued

REPO = Path(__file__).resolve().parents[2]


def _certs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy", "certs", *args], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a server certificate for coordinator.test, 10.77.0.2 and fd00::2, made with the commands."""
    root = tmp_path_factory.mktemp("certs")
    made = _certs("ca", "--out", str(root / "ca"))
    assert made.returncode == 0, made.stderr
    made = _certs("server", "--ca", str(root / "ca"), "--out", str(root / "coordinator"), "--dns", "coordinator.test",
                  "--ip", "10.77.0.2", "--ip", "fd00::2")
    assert made.returncode == 0, made.stderr
    return root


def test_the_server_certificate_names_the_given_hosts_and_chains_to_the_ca(consortium: Path) -> None:
    names = check_server_files(consortium / "coordinator" / "fleet.pem", consortium / "coordinator" / "fleet.key",
                               consortium / "ca" / "ca.pem")
    assert (names.dns, names.ips) == (("coordinator.test",), ("10.77.0.2", "fd00::2"))


def test_private_keys_are_readable_by_their_owner_only(consortium: Path) -> None:
    modes = {path.name: path.stat().st_mode & 0o777 for path in consortium.rglob("*.*")}
    assert modes == {"ca.key": 0o600, "ca.pem": 0o644, "fleet.key": 0o600, "fleet.pem": 0o644}


def test_an_openssl_client_verifies_the_chain(consortium: Path) -> None:
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(consortium / "ca" / "ca.pem"),
                               str(consortium / "coordinator" / "fleet.pem")], capture_output=True, text=True)
    assert verified.stdout.strip().endswith(": OK"), verified.stdout + verified.stderr


def test_existing_files_are_not_overwritten(consortium: Path) -> None:
    before = (consortium / "ca" / "ca.key").read_bytes()
    again = _certs("ca", "--out", str(consortium / "ca"))
    assert again.returncode == 1
    assert again.stderr == f"error: {consortium / 'ca' / 'ca.pem'}: exists already; move it away or write elsewhere; " \
                           "check the path\n"
    assert (consortium / "ca" / "ca.key").read_bytes() == before


@pytest.mark.parametrize(("args", "why"), [
    ([], "the certificate names no host: give at least one DNS name or IP address"),
    (["--ip", "10.77.0.x"], "'10.77.0.x' is not an IP address"),
    (["--dns", "10.77.0.2"], "'10.77.0.2' is an IP address; pass it with --ip, not --dns"),
    (["--dns", "bad name.test"], "'bad name.test' is not a DNS name"),
])
def test_a_server_certificate_without_proper_hosts_is_refused(consortium: Path, tmp_path: Path, args: list[str],
                                                              why: str) -> None:
    made = _certs("server", "--ca", str(consortium / "ca"), "--out", str(tmp_path), *args)
    assert made.returncode == 1
    assert made.stderr.startswith(f"error: {why}")
    assert made.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_certificate_of_another_ca_is_refused(consortium: Path, tmp_path: Path) -> None:
    other = make_server_certificate(make_ca("Another CA", days=30), ips=["10.77.0.2"], common_name="x", days=30)
    write_issued(other, tmp_path / "fleet.pem", tmp_path / "fleet.key")
    with pytest.raises(CoordinatorConfigError, match=r"was not issued by the CA .*hospitals trust that CA"):
        check_server_files(tmp_path / "fleet.pem", tmp_path / "fleet.key", consortium / "ca" / "ca.pem")


def test_a_key_of_another_certificate_is_refused(consortium: Path, tmp_path: Path) -> None:
    other = make_server_certificate(make_ca("Another CA", days=30), ips=["10.77.0.2"], common_name="x", days=30)
    write_issued(other, tmp_path / "other.pem", tmp_path / "other.key")
    with pytest.raises(CoordinatorConfigError, match=r"METAI_COORDINATOR_FLEET_KEY .*other\.key is not the key of"):
        check_server_files(consortium / "coordinator" / "fleet.pem", tmp_path / "other.key",
                           consortium / "ca" / "ca.pem")


@pytest.mark.parametrize("damage", [b"", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                    b"not a certificate"])
def test_a_damaged_certificate_file_is_refused(consortium: Path, tmp_path: Path, damage: bytes) -> None:
    (tmp_path / "fleet.pem").write_bytes(damage)
    with pytest.raises(CoordinatorConfigError, match=r"METAI_COORDINATOR_FLEET_CERT .*fleet\.pem is not a PEM "):
        check_server_files(tmp_path / "fleet.pem", consortium / "coordinator" / "fleet.key",
                           consortium / "ca" / "ca.pem")


def test_a_missing_ca_file_is_named(consortium: Path, tmp_path: Path) -> None:
    missing = re.escape(f"METAI_COORDINATOR_FLEET_CA {tmp_path / 'ca.pem'} does not exist")
    with pytest.raises(CoordinatorConfigError, match=missing):
        check_server_files(consortium / "coordinator" / "fleet.pem", consortium / "coordinator" / "fleet.key",
                           tmp_path / "ca.pem")
