"""What deploy writes into a SuperNode's node config is what the node's ClientApp reads, on both engines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from deploy.federation import NodeSpec
from deploy.simulation import simulation_env
from node.client_app import anchoring_enabled, node_settings, read_passphrase
from node.node_config import SIMULATION_NODES_ENV


def _spec(tmp_path: Path) -> NodeSpec:
    node_dir = tmp_path / "node"
    node_dir.mkdir()
    secret = tmp_path / "node.pass"
    secret.write_text("a passphrase of the test\n", encoding="utf-8")
    return NodeSpec(node_dir, secret)


def _context(node_config: dict[str, str]) -> Context:
    return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})  # type: ignore[arg-type]


def test_the_deployment_engine_node_config_names_the_node_and_its_passphrase(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    context = _context({k: str(v) for k, v in spec.node_config().items()})
    assert node_settings(context)["node-dir"] == str(spec.node_dir.resolve())
    assert read_passphrase(context) == "a passphrase of the test"
    assert anchoring_enabled(context) is True


def test_the_simulation_engine_finds_the_node_by_partition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path)
    env = simulation_env([spec])
    assert list(env) == [SIMULATION_NODES_ENV]
    assert json.loads(env[SIMULATION_NODES_ENV])[0]["node-dir"] == str(spec.node_dir.resolve())
    monkeypatch.setenv(SIMULATION_NODES_ENV, env[SIMULATION_NODES_ENV])
    context = _context({"partition-id": "0"})
    assert read_passphrase(context) == "a passphrase of the test"
