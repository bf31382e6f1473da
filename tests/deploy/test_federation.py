"""deploy.federation and the `study` / `federation` commands: a SuperLink and SuperNodes per node directory."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from coordinator.core.config import CoordinatorSettings
from deploy.__main__ import app
from deploy.errors import ServiceStartError, SettingsError
from deploy.federation import (
    Federation,
    FederationError,
    NodeSpec,
    NodeSpecError,
    coordinator_env,
    parse_node,
    parse_overrides,
)
from deploy.flower import RunResult, SuperLinkProcess, SuperNodeProcess, start_supernode
from deploy.simulation import NODES_ENV, simulation_env
from node.config import NodeInfo
from node.keys import KEY_FILE
from tests.conftest import NODE_PASSPHRASE, light_keystore

PROBE = Path(__file__).resolve().parent / "flower_probe"
ADDRESS = "0x1234567890AbcdEF1234567890aBcdef12345678"
LabRun = tuple[RunResult, dict[str, Any], list[int], list[str]]  # result, ServerApp summary, run ids, log lines


def _node(tmp_path: Path, name: str, *, address: str | None = None) -> NodeSpec:
    """A node directory (with node.json when ``address`` is given) and its passphrase file."""
    node_dir = tmp_path / name
    node_dir.mkdir()
    if address:
        NodeInfo(name, address, "http://127.0.0.1:1", "deployment.json", "2026-01-01T00:00:00+00:00").save(node_dir)
    secret = tmp_path / f"{name}.passphrase"
    secret.write_text("correct horse battery staple\n")
    return NodeSpec(node_dir, secret)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---------------------------------------------------------------------- nodes and overrides


def test_node_option_splits_directory_and_passphrase_file() -> None:
    expected = NodeSpec(Path("nodes/general"), Path("secrets/general.txt"))
    assert parse_node("nodes/general=secrets/general.txt") == expected
    assert parse_node("nodes/general") == NodeSpec(Path("nodes/general"), None)


def test_node_option_without_a_directory_is_refused() -> None:
    with pytest.raises(NodeSpecError, match=r"--node '=x' names no directory"):
        parse_node("=x")


def test_supernode_is_named_for_the_hospital_address_without_unlocking(tmp_path: Path) -> None:
    assert _node(tmp_path, "general", address=ADDRESS).supernode_name() == ADDRESS


def test_supernode_of_a_directory_without_node_json_is_named_for_the_directory(tmp_path: Path) -> None:
    assert _node(tmp_path, "st-marys").supernode_name() == "st-marys"


def test_missing_node_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(NodeSpecError, match=rf"node directory {tmp_path}/absent does not exist"):
        NodeSpec(tmp_path / "absent").check()


def test_missing_passphrase_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "general").mkdir()
    with pytest.raises(NodeSpecError, match=rf"passphrase file {tmp_path}/nope of node {tmp_path}/general does not"):
        NodeSpec(tmp_path / "general", tmp_path / "nope").check()


def test_directory_name_unfit_for_a_supernode_is_refused(tmp_path: Path) -> None:
    (tmp_path / "St Mary's").mkdir()
    with pytest.raises(NodeSpecError, match=r"SuperNode name \"St Mary's\" is not 1-63 letters"):
        NodeSpec(tmp_path / "St Mary's").check()


def test_nodes_of_the_same_hospital_are_refused_before_anything_starts(tmp_path: Path) -> None:
    nodes = [_node(tmp_path, "a", address=ADDRESS), _node(tmp_path, "b", address=ADDRESS)]
    with pytest.raises(NodeSpecError, match=rf"share the SuperNode name\(s\) \['{ADDRESS}'\]"):
        Federation.up(tmp_path / "run", nodes)
    assert not (tmp_path / "run").exists()


def test_a_federation_needs_a_node(tmp_path: Path) -> None:
    with pytest.raises(NodeSpecError, match="no hospital nodes given"):
        Federation.up(tmp_path / "run", [])


def test_overrides_take_the_type_of_the_app_default() -> None:
    overrides = parse_overrides(PROBE, ["num-rounds=3", "lr=0.25", "result-file=/tmp/a b.json", "dim=8"])
    assert overrides == {"num-rounds": 3, "lr": 0.25, "result-file": "/tmp/a b.json", "dim": 8}
    assert isinstance(overrides["lr"], float)


def test_boolean_overrides(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.flwr.app.config]\nanchor = true\n")
    assert parse_overrides(tmp_path, ["anchor=false"]) == {"anchor": False}
    with pytest.raises(ValueError, match="--set anchor=maybe: anchor is true or false"):
        parse_overrides(tmp_path, ["anchor=maybe"])


def test_unknown_override_key_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"--set rounds: no such key in \[tool.flwr.app.config\] \(known: \['dim'"):
        parse_overrides(PROBE, ["rounds=3"])


def test_override_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(ValueError, match=r"--set lr=fast: lr is a number \(float, default 0.5\)"):
        parse_overrides(PROBE, ["lr=fast"])


def test_study_id_is_not_an_override() -> None:
    with pytest.raises(ValueError, match="give the study with --study-id"):
        parse_overrides(PROBE, ["study-id=3"])


def test_override_without_equals_is_refused() -> None:
    with pytest.raises(ValueError, match="--set 'lr' is not key=value"):
        parse_overrides(PROBE, ["lr"])


# ---------------------------------------------------------------------- coordinator settings


@pytest.fixture
def coordinator_settings(tmp_path: Path) -> CoordinatorSettings:
    (tmp_path / "deployment.json").write_text("{}")
    (tmp_path / "key.json").write_text("{}")
    return CoordinatorSettings(
        rpc_url="http://127.0.0.1:8545",
        manifest=tmp_path / "deployment.json",
        key_file=tmp_path / "key.json",
        passphrase=SecretStr("coordinator passphrase"),
        model_dir=Path("models"),
        # The settings with no default: every one is set here but the Fleet gateway's files, which only a
        # managed SuperLink takes (and a managed one takes no SUPERLINK_ADDRESS).
        superlink_address="link.example.org:9093",
        superlink_root_certificates=Path("ca.pem"),
        flower_app=Path("app"),
    )


def test_coordinator_env_passes_every_setting_with_absolute_paths(coordinator_settings: CoordinatorSettings) -> None:
    env = coordinator_env(coordinator_settings)
    assert env["METAI_COORDINATOR_RPC_URL"] == "http://127.0.0.1:8545"
    assert env["METAI_COORDINATOR_PASSPHRASE"] == "coordinator passphrase"
    assert env["METAI_COORDINATOR_MODEL_DIR"] == str(Path("models").resolve())
    assert env["METAI_COORDINATOR_KEY_FILE"] == str(coordinator_settings.key_file)
    assert env["METAI_COORDINATOR_SUPERLINK_ROOT_CERTIFICATES"] == str(Path("ca.pem").resolve())
    assert set(env) == {f"METAI_COORDINATOR_{name.upper()}" for name in CoordinatorSettings.model_fields
                        if name not in ("fleet_cert", "fleet_key", "fleet_ca")}


def test_coordinator_env_without_passphrase_is_refused(coordinator_settings: CoordinatorSettings) -> None:
    with pytest.raises(SettingsError, match="METAI_COORDINATOR_PASSPHRASE is not set"):
        coordinator_env(coordinator_settings.model_copy(update={"passphrase": None}))


def test_coordinator_env_with_a_missing_key_file_is_refused(
    coordinator_settings: CoordinatorSettings, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match=rf"METAI_COORDINATOR_KEY_FILE is {tmp_path}/gone.json, which does not"):
        coordinator_env(coordinator_settings.model_copy(update={"key_file": tmp_path / "gone.json"}))


# ---------------------------------------------------------------------- records


def test_load_without_a_federation_says_how_to_start_one(tmp_path: Path) -> None:
    with pytest.raises(FederationError, match=r"no federation is recorded in .* `python -m deploy federation up`"):
        Federation.load(tmp_path)


def test_launch_refuses_a_study_id_that_is_not_positive(tmp_path: Path) -> None:
    link = SuperLinkProcess(0, "127.0.0.1:1", "127.0.0.1:1", "127.0.0.1:1", tmp_path / "l", tmp_path / "d",
                            tmp_path / "h", None)
    federation = Federation(tmp_path, link, (), (), None, PROBE)
    with pytest.raises(ValueError, match="study id 0 is not a positive integer"):
        federation.launch(0)
    with pytest.raises(ValueError, match="run_config names study 3 but the launch is for study 4"):
        federation.launch(4, {"study-id": 3})


def test_simulation_nodes_are_listed_by_partition(tmp_path: Path) -> None:
    nodes = [_node(tmp_path, "general"), _node(tmp_path, "st-marys")]
    entries = json.loads(simulation_env(nodes)[NODES_ENV])
    assert entries == [
        {"node-dir": str(tmp_path / name), "passphrase-file": str(tmp_path / f"{name}.passphrase")}
        for name in ("general", "st-marys")
    ]


def test_simulation_needs_each_passphrase_file(tmp_path: Path) -> None:
    (tmp_path / "general").mkdir()
    with pytest.raises(NodeSpecError, match="has no passphrase file; give it as DIR=PASSPHRASE_FILE"):
        simulation_env([NodeSpec(tmp_path / "general")])


# ---------------------------------------------------------------------- a running federation (probe app)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, list[NodeSpec]]]:
    """A federation of two probe nodes, no TLS, with a coordinator setting in the SuperLink's environment."""
    tmp_path = tmp_path_factory.mktemp("federation")
    nodes = [_node(tmp_path, "general", address=ADDRESS), _node(tmp_path, "st-marys")]
    env = {"METAI_COORDINATOR_RPC_URL": "http://127.0.0.1:9/probe"}
    federation = Federation.up(tmp_path / "run", nodes, coordinator_env=env, app_dir=PROBE)
    try:
        yield federation, nodes
    finally:
        federation.down()


@pytest.fixture(scope="module")
def lab_run(lab: tuple[Federation, list[NodeSpec]]) -> LabRun:
    """Study 7 launched on the lab: the result, the ServerApp's summary, and what the callbacks received."""
    federation, _ = lab
    submitted: list[int] = []
    lines: list[str] = []
    result_file = federation.run_dir / "server.json"
    result = federation.launch(
        7,
        {"num-rounds": 1, "result-file": str(result_file), "env-keys": "METAI_COORDINATOR_RPC_URL"},
        timeout=120,
        on_submitted=submitted.append,
        on_log=lines.append,
    )
    return result, json.loads(result_file.read_text()), submitted, lines


@pytest.mark.slow
def test_launch_puts_the_study_id_in_the_run_config(lab_run: LabRun) -> None:
    result, summary, _, _ = lab_run
    assert result.status == "finished:completed"
    assert summary["run_config"]["study-id"] == 7


@pytest.mark.slow
def test_the_serverapp_inherits_the_coordinator_env(lab_run: LabRun) -> None:
    _, summary, _, _ = lab_run
    assert summary["env"] == {"METAI_COORDINATOR_RPC_URL": "http://127.0.0.1:9/probe"}
    assert "METAI_COORDINATOR_RPC_URL" not in os.environ  # given to the SuperLink only


@pytest.mark.slow
def test_each_clientapp_gets_its_share_of_the_cpus_as_torch_threads(
    lab: tuple[Federation, list[NodeSpec]], lab_run: LabRun
) -> None:
    _, nodes = lab
    share = str(max(1, len(os.sched_getaffinity(0)) // len(nodes)))
    for node in nodes:
        seen = json.loads((node.node_dir / "probe-round1.json").read_text())
        assert seen["omp_num_threads"] == share


@pytest.mark.slow
def test_each_clientapp_gets_its_node_directory_and_passphrase_file(
    lab: tuple[Federation, list[NodeSpec]], lab_run: LabRun
) -> None:
    _, nodes = lab
    for node in nodes:
        seen = json.loads((node.node_dir / "probe-round1.json").read_text())
        assert seen["node_config"] == {"node-dir": str(node.node_dir), "passphrase-file": str(node.passphrase_file)}


@pytest.mark.slow
def test_launch_reports_the_run_id_and_streams_the_serverapp_log(
    lab: tuple[Federation, list[NodeSpec]], lab_run: LabRun
) -> None:
    federation, _ = lab
    result, _, submitted, lines = lab_run
    assert submitted == [result.run_id]
    assert any(line.startswith("probe round 1: vector=") for line in lines)
    assert federation.run_log(result.run_id).read_text() == result.logs == "".join(f"{line}\n" for line in lines)


@pytest.mark.slow
def test_supernodes_are_named_for_their_hospitals(lab: tuple[Federation, list[NodeSpec]]) -> None:
    federation, _ = lab
    assert [node.name for node in federation.supernodes] == [ADDRESS, "st-marys"]


@pytest.mark.slow
def test_a_later_process_finds_the_federation(lab: tuple[Federation, list[NodeSpec]]) -> None:
    federation, _ = lab
    found = Federation.load(federation.run_dir)
    assert (found.superlink, found.supernodes, found.app_dir) == (federation.superlink, federation.supernodes, PROBE)
    assert [m.running for m in found.status()] == [True, True, True]


@pytest.mark.slow
def test_a_second_federation_in_the_same_directory_is_refused(lab: tuple[Federation, list[NodeSpec]]) -> None:
    federation, nodes = lab
    with pytest.raises(FederationError, match=r"a federation is already up in .* \(superlink pid \d+\)"):
        Federation.up(federation.run_dir, nodes, app_dir=PROBE)


@pytest.mark.slow
def test_down_stops_everything_and_forgets_the_federation(tmp_path: Path) -> None:
    with Federation.up(tmp_path / "run", [_node(tmp_path, "solo")], app_dir=PROBE) as federation:
        pids = [federation.superlink.pid, *(n.pid for n in federation.supernodes)]
        children = [pid for p in (federation.superlink, *federation.supernodes) for pid, _ in p.children]
        assert all(_running(pid) for pid in pids + children)
    assert [pid for pid in pids + children if _running(pid)] == []
    with pytest.raises(FederationError, match="no federation is recorded"):
        Federation.load(tmp_path / "run")


def test_a_superlink_that_cannot_start_leaves_nothing_behind(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServiceStartError, match=r"flower-superlink exited with 1[\s\S]*address already in use"):
            Federation.up(tmp_path / "run", [_node(tmp_path, "solo")], app_dir=PROBE, port=port)
    assert not (tmp_path / "run" / "federation.json").exists()


def _processes_naming(path: Path) -> dict[int, str]:
    """Running processes whose command line names a path under ``path``."""
    found = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid() and _running(int(proc.name)):
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmdline:
                found[int(proc.name)] = cmdline
    return found


def test_a_signer_that_cannot_start_stops_the_superlink_started_beside_it(tmp_path: Path) -> None:
    # The agent starts while the SuperLink does; its key does not open with the node's passphrase.
    spec = _node(tmp_path, "general", address=ADDRESS)
    (spec.node_dir / KEY_FILE).write_text(light_keystore(bytes(range(1, 33)), "another passphrase, not the node's"))
    with pytest.raises(ServiceStartError, match=r"signing agent of .*general did not start"):
        Federation.up(tmp_path / "run", [spec], app_dir=PROBE)
    assert "Starting Flower SuperLink" in (tmp_path / "run" / "superlink" / "superlink.log").read_text()
    assert _processes_naming(tmp_path) == {}
    assert not (tmp_path / "run" / "federation.json").exists()


@pytest.mark.slow
def test_a_supernode_that_fails_stops_the_one_started_beside_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import deploy.federation

    started: list[SuperNodeProcess] = []

    def start_or_fail(run_dir: Path, superlink: SuperLinkProcess, name: str, **kwargs: Any) -> SuperNodeProcess:
        if name == "st-marys":
            raise ServiceStartError("flower-supernode 'st-marys' did not start (made to fail by the test)")
        started.append(start_supernode(run_dir, superlink, name, **kwargs))
        return started[-1]

    monkeypatch.setattr(deploy.federation, "start_supernode", start_or_fail)
    with pytest.raises(ServiceStartError, match="made to fail by the test"):
        Federation.up(tmp_path / "run", [_node(tmp_path, "general"), _node(tmp_path, "st-marys")], app_dir=PROBE)
    assert [s.name for s in started] == ["general"]  # it had joined the SuperLink
    assert _processes_naming(tmp_path) == {}
    assert not (tmp_path / "run" / "federation.json").exists()


# ---------------------------------------------------------------------- the commands


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, coordinator_settings: CoordinatorSettings) -> CliRunner:
    """The commands run in an empty directory (no .env), with a run dir and coordinator settings of their own."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAI_RUN_DIR", str(tmp_path / "run"))
    for name, value in coordinator_env(coordinator_settings).items():
        monkeypatch.setenv(name, value)
    return CliRunner()


def test_study_run_with_a_missing_node_directory_fails_in_red(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["study", "run", "--study-id", "1", "--node", str(tmp_path / "absent")], color=True)
    assert result.exit_code == 1
    assert f"error: node directory {tmp_path / 'absent'} does not exist" in result.stderr
    assert "\x1b[31m" in result.stderr  # red


def test_study_run_with_a_missing_passphrase_file_fails(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "general").mkdir()
    node = f"{tmp_path / 'general'}={tmp_path / 'general.pass'}"
    result = cli.invoke(app, ["study", "run", "--study-id", "1", "--node", node])
    assert result.exit_code == 1
    assert f"error: passphrase file {tmp_path / 'general.pass'} of node" in result.stderr


def test_study_run_with_an_unknown_override_fails_before_starting_anything(cli: CliRunner, tmp_path: Path) -> None:
    node = _node(tmp_path, "general")
    args = ["study", "run", "--study-id", "1", "--node", f"{node.node_dir}={node.passphrase_file}", "--set", "epochs=1"]
    result = cli.invoke(app, args)
    assert result.exit_code == 1
    assert "error: --set epochs: no such key in [tool.flwr.app.config]" in result.stderr
    assert not (tmp_path / "run" / "federation").exists()


def test_study_run_without_coordinator_settings_fails(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METAI_COORDINATOR_RPC_URL")
    node = _node(tmp_path, "general")
    args = ["study", "run", "--study-id", "1", "--node", f"{node.node_dir}={node.passphrase_file}",
            "--set", "min-nodes=1"]
    result = cli.invoke(app, args)
    assert result.exit_code == 1
    assert "error: METAI_COORDINATOR_RPC_URL is not set" in result.stderr


def test_study_launch_without_a_federation_fails(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["study", "launch", "--study-id", "1"])
    assert result.exit_code == 1
    assert f"error: no federation is recorded in {tmp_path / 'run' / 'federation'}" in result.stderr


def test_federation_status_and_down_without_a_federation_fail(cli: CliRunner) -> None:
    for command in ("status", "down"):
        result = cli.invoke(app, ["federation", command])
        assert result.exit_code == 1, command
        assert "error: no federation is recorded" in result.stderr


@pytest.fixture
def real_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_node, exchange,  # type: ignore[no-untyped-def]
             actors) -> tuple[CliRunner, str, str]:
    """The commands with a real coordinator (keystore, chain, manifest) and a real hospital node, which
    `federation up` checks before it starts anything: (runner, --node value, hospital address)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METAI_RUN_DIR", str(tmp_path / "run"))
    node = make_node("General Hospital")  # also writes tmp_path/deployment.json
    key_file = tmp_path / "coordinator-key.json"
    key_file.write_text(light_keystore(actors.coordinator.key, "coordinator passphrase"))
    settings = CoordinatorSettings(rpc_url=exchange.chain.rpc_url, manifest=tmp_path / "deployment.json",
                                   key_file=key_file, passphrase=SecretStr("coordinator passphrase"),
                                   model_dir=tmp_path / "models")
    for name, value in coordinator_env(settings).items():
        monkeypatch.setenv(name, value)
    secret = tmp_path / "general.passphrase"
    secret.write_text(NODE_PASSPHRASE + "\n")
    return CliRunner(), f"{node.dir}={secret}", node.address


def test_federation_up_quotes_the_cause_from_the_superlink_log_when_it_cannot_start(
        real_cli: tuple[CliRunner, str, str], tmp_path: Path) -> None:
    cli, node, _ = real_cli
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli.invoke(app, ["federation", "up", "--node", node, "--port", str(port)])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1, result.stderr  # one line: the log's cause, not the whole log
    assert result.stderr.startswith("error: flower-superlink exited with 1: ... ")
    assert f"error while attempting to bind on address ('127.0.0.1', {port}): address already in use" in result.stderr
    assert "lines quoted with METAI_DEBUG=1" in result.stderr


def test_study_simulate_needs_each_passphrase_file(cli: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "general").mkdir()
    result = cli.invoke(app, ["study", "simulate", "--study-id", "1", "--node", str(tmp_path / "general")])
    assert result.exit_code == 1
    assert f"error: node {tmp_path / 'general'} has no passphrase file; give it as DIR=PASSPHRASE_FILE" in result.stderr


@pytest.mark.slow
def test_federation_up_status_down(real_cli: tuple[CliRunner, str, str], tmp_path: Path) -> None:
    cli, node, address = real_cli
    up = cli.invoke(app, ["federation", "up", "--node", node])
    try:
        assert up.exit_code == 0, up.stderr
        assert f"SuperNode {address} pid" in up.stdout
        status = cli.invoke(app, ["federation", "status"])
        assert status.exit_code == 0, status.stderr
        members = [line.split(":")[0] for line in status.stdout.splitlines()]
        assert members == ["superlink superlink", f"supernode {address}", f"signer {address}"]
        assert status.stdout.count(" running on 127.0.0.1:") == 2
    finally:
        down = cli.invoke(app, ["federation", "down"])
    assert down.exit_code == 0, down.stderr
    assert f"federation down; logs stay in {tmp_path / 'run' / 'federation'}" in down.stdout
