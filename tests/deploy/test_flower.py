"""The Flower deployment engine: real SuperLink and SuperNodes on loopback, a real run of a tiny app."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from deploy.errors import ServiceStartError
from deploy.flower import (
    FlowerRunError,
    RunResult,
    SuperLinkProcess,
    SuperNodeProcess,
    flower_env,
    load_process,
    make_security,
    run_app,
    start_superlink,
    start_supernode,
    stop,
    write_federation_config,
)

PROBE = Path(__file__).resolve().parent / "flower_probe"
# Two hospitals with different targets: after 2 rounds at lr 0.5 from zeros the global vector is
# round 1: mean(0.5, 1.5) = 1.0; round 2: mean(1.0, 2.0) = 1.5.
HOSPITALS = {"general": ("General Hospital", 1.0), "st-marys": ('St. Mary\'s "North"', 3.0)}


@dataclass(frozen=True)
class Deployment:
    superlink: SuperLinkProcess
    nodes: dict[str, SuperNodeProcess]
    flwr_home: Path
    reports: Path


def _node_config(name: str, reports: Path) -> dict[str, str | float]:
    label, value = HOSPITALS[name]
    return {"node-name": label, "node-value": value, "report-dir": str(reports)}


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


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def insecure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """SuperLink + two SuperNodes without TLS; stopped by PID afterwards, also when a test fails."""
    run_dir = tmp_path_factory.mktemp("flower-insecure")
    started: list[SuperLinkProcess | SuperNodeProcess] = []
    try:
        superlink = start_superlink(run_dir)
        started.append(superlink)
        nodes = {}
        for name in HOSPITALS:
            nodes[name] = start_supernode(run_dir, superlink, name, node_config=_node_config(name, run_dir / "reports"))
            started.append(nodes[name])
        write_federation_config(superlink.flwr_home, "lab", superlink, None)
        yield Deployment(superlink, nodes, superlink.flwr_home, run_dir / "reports")
    finally:
        for process in reversed(started):
            stop(process)


@pytest.fixture(scope="module")
def insecure_run(insecure: Deployment) -> tuple[RunResult, dict[str, Any]]:
    """The probe app run for 2 rounds on both nodes; returns how it ended and the ServerApp's summary."""
    result_file = insecure.reports / "server.json"
    result = run_app(
        PROBE,
        flwr_home=insecure.flwr_home,
        federation="lab",
        run_config={"num-rounds": 2, "result-file": str(result_file)},
        timeout=120,
    )
    return result, json.loads(result_file.read_text())


# ---------------------------------------------------------------------- insecure deployment


@pytest.mark.slow
def test_run_completes_with_results_from_both_nodes(
    insecure: Deployment, insecure_run: tuple[RunResult, dict[str, Any]]
) -> None:
    result, summary = insecure_run
    assert result.status == "finished:completed"
    assert summary["run_id"] == result.run_id
    node_ids = sorted(node.node_id for node in insecure.nodes.values())
    rounds = [{k: v for k, v in r.items() if k != "seconds"} for r in summary["rounds"]]
    assert rounds == [{"round": r, "nodes": node_ids, "node_values": [1.0, 3.0]} for r in (1, 2)]
    assert summary["vector"] == pytest.approx([1.5] * 4, abs=1e-12)
    assert "probe round 2: vector=[1.5, 1.5, 1.5, 1.5] from 2 nodes" in result.logs
    assert result.log_file.read_text() == result.logs


@pytest.mark.slow
def test_each_clientapp_sees_its_own_node_config(
    insecure: Deployment, insecure_run: tuple[RunResult, dict[str, Any]]
) -> None:
    result, _ = insecure_run
    for name, node in insecure.nodes.items():
        label = HOSPITALS[name][0]
        for server_round in (1, 2):
            seen = json.loads((insecure.reports / f"{label}-round{server_round}.json").read_text())
            assert seen["node_config"] == _node_config(name, insecure.reports)  # spaces and quotes intact
            assert seen["node_id"] == node.node_id
            assert seen["run_id"] == result.run_id


@pytest.mark.slow
def test_apps_run_from_the_installed_fab_in_this_venv(
    insecure: Deployment, insecure_run: tuple[RunResult, dict[str, Any]]
) -> None:
    for name, node in insecure.nodes.items():
        seen = json.loads((insecure.reports / f"{HOSPITALS[name][0]}-round1.json").read_text())
        assert Path(seen["app_file"]).is_relative_to(node.flwr_home / "apps")
        assert seen["sys_prefix"] == sys.prefix  # no runtime env was created for the app's dependencies


@pytest.mark.slow
def test_run_config_merges_overrides_with_app_defaults(
    insecure: Deployment, insecure_run: tuple[RunResult, dict[str, Any]]
) -> None:
    _, summary = insecure_run
    seen = json.loads((insecure.reports / "General Hospital-round1.json").read_text())
    defaults = tomllib.loads((PROBE / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    expected = {**defaults, "num-rounds": 2, "result-file": str(insecure.reports / "server.json")}
    assert seen["run_config"] == expected  # the ClientApp's view
    assert summary["run_config"] == expected  # the ServerApp's view


@pytest.mark.slow
def test_failing_serverapp_raises_flower_run_error_with_its_log(insecure: Deployment) -> None:
    with pytest.raises(FlowerRunError, match=r"ended finished:failed[\s\S]*only 2 of 5 SuperNodes") as caught:
        run_app(
            PROBE,
            flwr_home=insecure.flwr_home,
            federation="lab",
            run_config={"min-nodes": 5, "wait-nodes": 0.5},
            timeout=120,
        )
    assert caught.value.status == "finished:failed"
    assert caught.value.run_id is not None


@pytest.mark.slow
def test_a_run_that_outlives_its_timeout_is_stopped(insecure: Deployment) -> None:
    with pytest.raises(FlowerRunError, match="did not finish within 6 s and was stopped") as caught:
        run_app(
            PROBE,
            flwr_home=insecure.flwr_home,
            federation="lab",
            run_config={"min-nodes": 5, "wait-nodes": 120.0},
            timeout=6,
        )
    listed = subprocess.run(
        [Path(sys.executable).parent / "flwr", "ls", "lab", "--run-id", str(caught.value.run_id), "--format", "json"],
        env=flower_env(insecure.flwr_home.parent),
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(listed.stdout)["runs"][0]["status"] == "finished:stopped"


@pytest.mark.slow
def test_every_port_is_bound_to_loopback_only(insecure: Deployment) -> None:
    addresses = [insecure.superlink.control_address] + [n.clientappio_address for n in insecure.nodes.values()]
    for address in addresses:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert _listening(int(port)) == {"0100007F"}, address  # 127.0.0.1 in /proc/net/tcp byte order


# TLS + SuperNode authentication on these functions (make_security, register_supernodes, a
# registered SuperNode in a run, an unregistered one refused with exit code 305 and the
# SuperLink's log line) is exercised by tests/federated/test_study_tls_e2e.py through
# deploy.federation, with a real study: one TLS federation for the suite instead of three.


# ---------------------------------------------------------------------- stopping


@pytest.fixture
def launched() -> Iterator[list[SuperLinkProcess | SuperNodeProcess]]:
    """Processes a test appends here are stopped afterwards (stopping twice is harmless)."""
    started: list[SuperLinkProcess | SuperNodeProcess] = []
    yield started
    for process in reversed(started):
        stop(process)


def test_stop_ends_the_processes_and_their_children(
    tmp_path: Path, launched: list[SuperLinkProcess | SuperNodeProcess]
) -> None:
    launched.append(superlink := start_superlink(tmp_path))
    launched.append(node := start_supernode(tmp_path, superlink, "solo", node_config={"node-value": 1.0}))
    children = [pid for pid, _ in (*superlink.children, *node.children)]
    assert len(children) == 2, "the SuperLink starts one flower-superexec, the SuperNode its ClientApp worker"
    assert load_process(tmp_path / "supernode-solo" / "supernode.json") == node
    assert load_process(tmp_path / "superlink.json") == superlink
    stop(load_process(tmp_path / "supernode-solo" / "supernode.json"))  # as a later command would
    stop(superlink)
    for pid in (superlink.pid, node.pid):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert [pid for pid in children if _running(pid)] == []


def test_a_supernode_that_cannot_reach_its_superlink_times_out(
    tmp_path: Path, launched: list[SuperLinkProcess | SuperNodeProcess]
) -> None:
    launched.append(superlink := start_superlink(tmp_path))
    stop(superlink)
    with pytest.raises(ServiceStartError, match=r"flower-supernode 'late' was not ready within 3 s"):
        start_supernode(tmp_path, superlink, "late", node_config={}, timeout=3)


# ---------------------------------------------------------------------- no processes


def _fake_superlink(tmp_path: Path, *, tls: bool = False) -> SuperLinkProcess:
    return SuperLinkProcess(
        pid=0,
        fleet_address="127.0.0.1:1",
        serverappio_address="127.0.0.1:1",
        control_address="127.0.0.1:1",
        log_file=tmp_path / "superlink.log",
        database=tmp_path / "superlink.db",
        flwr_home=tmp_path / "flwr-home",
        ca_cert=tmp_path / "ca.pem" if tls else None,
    )


def test_flower_env_keeps_flower_offline_and_inside_the_run_dir(tmp_path: Path) -> None:
    env = flower_env(tmp_path)
    assert env["FLWR_HOME"] == str((tmp_path / "flwr-home").resolve())
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"
    assert (Path(env["PATH"].split(os.pathsep)[0]) / "flwr-clientapp").exists()


def test_superexec_asks_for_tasks_twice_a_second_unless_told_otherwise(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # 0.1 s kept an idle SuperLink + SuperExec at 9.8 % of a core on 2 cores; 0.5 s at 2.6 %
    monkeypatch.delenv("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", raising=False)
    assert flower_env(tmp_path)["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] == "0.5"
    monkeypatch.setenv("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "2")
    assert flower_env(tmp_path)["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] == "2"


def test_federation_config_keeps_other_connections(tmp_path: Path) -> None:
    home = tmp_path / "flwr-home"
    home.mkdir()
    (home / "config.toml").write_text('[superlink]\ndefault = "old"\n\n[superlink.old]\naddress = "10.0.0.1:9093"\n')
    write_federation_config(home, "lab", _fake_superlink(tmp_path), None)
    config = tomllib.loads((home / "config.toml").read_text())
    assert config["superlink"] == {
        "default": "lab",
        "old": {"address": "10.0.0.1:9093"},
        "lab": {"address": "127.0.0.1:1", "insecure": True},
    }


def test_federation_config_with_tls_trusts_the_ca(tmp_path: Path) -> None:
    security = make_security(tmp_path / "sec", [])
    write_federation_config(tmp_path / "home", "secure", _fake_superlink(tmp_path, tls=True), security)
    config = tomllib.loads((tmp_path / "home" / "config.toml").read_text())
    assert config["superlink"]["secure"] == {
        "address": "127.0.0.1:1",
        "root-certificates": str(security.ca_cert.resolve()),
    }


def test_security_must_match_the_superlink(tmp_path: Path) -> None:
    security = make_security(tmp_path / "sec", ["alpha"])
    with pytest.raises(ValueError, match="started without TLS; pass the same security="):
        start_supernode(tmp_path, _fake_superlink(tmp_path), "alpha", node_config={}, security=security)


def test_supernode_names_that_are_not_plain_file_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"SuperNode name '\.\./up' is not"):
        start_supernode(tmp_path, _fake_superlink(tmp_path), "../up", node_config={})


def test_node_config_with_a_control_character_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"node_config\['note'\] holds a control character"):
        start_supernode(tmp_path, _fake_superlink(tmp_path), "alpha", node_config={"note": "two\nlines"})


def test_run_config_keys_must_exist_in_the_app(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"run_config keys \['no-such-key'\] are not in \[tool.flwr.app.config\]"):
        run_app(PROBE, flwr_home=tmp_path, federation="lab", run_config={"no-such-key": 1}, timeout=10)


def test_security_material_chains_to_the_ca_and_covers_loopback(tmp_path: Path) -> None:
    security = make_security(tmp_path, ["alpha"])
    ca = x509.load_pem_x509_certificate(security.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(security.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert stat.S_IMODE(security.server_key.stat().st_mode) == 0o600


def test_supernode_keys_are_openssh_p384_pairs(tmp_path: Path) -> None:
    private_path, public_path = make_security(tmp_path, ["alpha"]).keys_of("alpha")
    private = load_ssh_private_key(private_path.read_bytes(), None)
    public = load_ssh_public_key(public_path.read_bytes())
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp384r1"
    assert private.public_key() == public
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600


def test_bad_supernode_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"SuperNode name 'a b' is not"):
        make_security(tmp_path, ["a b"])
    with pytest.raises(ValueError, match="SuperNode names repeat"):
        make_security(tmp_path, ["x", "x"])
