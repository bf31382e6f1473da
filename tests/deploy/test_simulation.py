"""deploy.simulation with the probe app: Flower's simulation engine (Ray) in this process, on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.federation import NodeSpec, NodeSpecError
from deploy.simulation import NODES_ENV, SimulationError, SimulationResult, simulate

PROBE = Path(__file__).resolve().parent / "flower_probe"
RPC_URL = "http://127.0.0.1:9/simulated"
Simulated = tuple[SimulationResult, dict[str, Any], Path, list[NodeSpec]]  # result, ServerApp summary, reports, nodes


def _nodes(tmp_path: Path) -> list[NodeSpec]:
    nodes = []
    for name in ("general", "st-marys"):
        (tmp_path / name).mkdir()
        (tmp_path / f"{name}.passphrase").write_text("correct horse battery staple\n")
        nodes.append(NodeSpec(tmp_path / name, tmp_path / f"{name}.passphrase"))
    return nodes


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Simulated:
    """The probe simulated for one round on two virtual SuperNodes as study 5; result, summary, reports, nodes."""
    tmp_path = tmp_path_factory.mktemp("simulation")
    nodes = _nodes(tmp_path)
    reports = tmp_path / "reports"
    before = dict(os.environ)
    result = simulate(
        nodes,
        5,
        {
            "num-rounds": 1,
            "result-file": str(reports / "server.json"),
            "report-dir": str(reports),
            "env-keys": f"METAI_COORDINATOR_RPC_URL,{NODES_ENV},OMP_NUM_THREADS",
        },
        coordinator_env={"METAI_COORDINATOR_RPC_URL": RPC_URL},
        app_dir=PROBE,
    )
    assert dict(os.environ) == before, "simulate() left the environment changed"
    return result, json.loads((reports / "server.json").read_text()), reports, nodes


@pytest.mark.slow
def test_the_serverapp_sees_the_study_id_in_its_run_config(
    simulated: Simulated,
) -> None:
    result, summary, _, _ = simulated
    assert summary["run_config"]["study-id"] == 5
    assert summary["run_config"] == result.run_config
    assert summary["vector"] == pytest.approx([0.5] * 4)  # both nodes pulled halfway to 1.0


@pytest.mark.slow
def test_each_clientapp_finds_its_node_by_partition_and_sees_the_run_config(
    simulated: Simulated,
) -> None:
    result, _, reports, _ = simulated
    for partition in (0, 1):
        seen = json.loads((reports / f"probe{partition}-round1.json").read_text())
        assert seen["node_config"] == {"partition-id": partition, "num-partitions": 2}
        assert seen["run_config"] == result.run_config


@pytest.mark.slow
def test_the_apps_run_with_the_nodes_and_coordinator_settings_in_their_environment(
    simulated: Simulated,
) -> None:
    _, summary, _, nodes = simulated
    assert summary["env"]["METAI_COORDINATOR_RPC_URL"] == RPC_URL
    assert summary["env"]["OMP_NUM_THREADS"] == "1"
    listed = json.loads(summary["env"][NODES_ENV])
    assert listed == [{"node-dir": str(n.node_dir), "passphrase-file": str(n.passphrase_file)} for n in nodes]


def test_unknown_run_config_key_is_refused_before_ray_starts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"run_config keys \['epochs'\] are not in \[tool.flwr.app.config\]"):
        simulate(_nodes(tmp_path), 5, {"epochs": 1}, app_dir=PROBE)


def test_simulation_needs_nodes(tmp_path: Path) -> None:
    with pytest.raises(NodeSpecError, match="no hospital nodes given"):
        simulate([], 5, app_dir=PROBE)


@pytest.mark.slow
def test_a_failing_serverapp_raises_simulation_error_and_ray_is_gone(tmp_path: Path) -> None:
    before = dict(os.environ)
    with pytest.raises(SimulationError, match=r"simulation of study 5 failed: RuntimeError: only 2 of 5 SuperNodes"):
        simulate(_nodes(tmp_path), 5, {"min-nodes": 5, "wait-nodes": 0.5}, app_dir=PROBE)
    assert not sys.modules["ray"].is_initialized()
    assert dict(os.environ) == before


def test_ray_imported_without_the_loopback_switch_is_refused(tmp_path: Path) -> None:
    # In a process of its own: this one's Ray must stay importable with the switch.
    script = (
        "import sys; from pathlib import Path; import ray\n"
        "from deploy.federation import NodeSpec\n"
        "from deploy.simulation import simulate\n"
        "simulate([NodeSpec(Path(sys.argv[1]), Path(sys.argv[2]))], 5, app_dir=Path(sys.argv[3]))\n"
    )
    nodes = _nodes(tmp_path)
    args = [str(nodes[0].node_dir), str(nodes[0].passphrase_file), str(PROBE)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert "SimulationError: Ray was imported before simulate() without RAY_ENABLE_WINDOWS_OR_OSX" in done.stderr
