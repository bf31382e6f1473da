"""``metai-coordinator supernode`` without a SuperLink to talk to: one line saying why, exit 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.process import free_port

REPO = Path(__file__).resolve().parents[2]


def _supernode(tmp_path: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAI_")} | {"PYTHONPATH": str(REPO)}
    env |= {f"METAI_COORDINATOR_{name.upper()}": value for name, value in settings.items()}
    return subprocess.run([sys.executable, "-m", "coordinator.cli", "supernode", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def _one_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr


def test_without_a_superlink_configured_it_says_what_to_set(tmp_path: Path) -> None:
    assert _one_error(_supernode(tmp_path, "list")).startswith(
        "error: no SuperLink is configured: set METAI_COORDINATOR_SUPERLINK=managed")


@pytest.mark.parametrize("started", [False, True])
def test_a_managed_superlink_that_is_not_running_is_named(tmp_path: Path, started: bool) -> None:
    port = free_port()
    if started:  # the service ran here before: its loopback CA is there, its SuperLink is not
        (tmp_path / "run" / "superlink" / "tls").mkdir(parents=True)
        from coordinator.federated.tls import make_ca, write_certificate

        write_certificate(make_ca("loopback", days=1).certificate, tmp_path / "run" / "superlink" / "tls" / "ca.pem")
    done = _supernode(tmp_path, "list", superlink="managed", superlink_port=str(port), fleet_cert="f.pem",
                      fleet_key="f.key", fleet_ca="ca.pem")
    error = _one_error(done)
    if started:
        assert error.startswith(f"error: the SuperLink's Control API at 127.0.0.1:{port} did not answer")
    else:
        assert error.startswith(f"error: the CA certificate {tmp_path}/run/superlink/tls/ca.pem of the SuperLink at "
                                f"127.0.0.1:{port} cannot be read")


def test_a_malformed_key_is_refused_before_any_superlink_is_asked(tmp_path: Path) -> None:
    done = _supernode(tmp_path, "register", "general", "ecdsa-sha2-nistp384 AAAA%%%")
    assert _one_error(done).startswith("error: the public key 'ecdsa-sha2-nistp384 AAAA%%%' does not decode")
