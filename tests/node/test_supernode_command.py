"""The one SuperNode command line (node/federated/supernode.py), its node config and environment, as serve and
deploy's labs both use them; and the ClientApp reads the chain URL the node config gives."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from flwr.app import Context, RecordDict

from coordinator.federated.superlink import flwr_env
from deploy.flower import flower_env
from node.client_app import rpc_url
from node.federated.pacing import Pacing
from node.federated.supernode import SuperLinkRoute, supernode_command, supernode_env, supernode_node_config


def test_over_tls_the_supernode_checks_the_superlink_with_the_ca_and_signs_with_the_node_key(tmp_path: Path) -> None:
    route = SuperLinkRoute("10.77.0.2:9443", tmp_path / "ca.pem", tmp_path / "supernode.key")
    cmd = supernode_command(route, port=9094, node_config_file=tmp_path / "node-config.toml", isolation="subprocess")
    assert Path(cmd[0]).name == "flower-supernode"
    assert cmd[1:] == ["--superlink", "10.77.0.2:9443", "--host", "127.0.0.1", "--port", "9094",
                       "--isolation", "subprocess", "--node-config", str(tmp_path / "node-config.toml"),
                       "--root-certificates", str(tmp_path / "ca.pem"),
                       "--auth-supernode-private-key", str(tmp_path / "supernode.key")]


def test_by_default_the_supernode_runs_with_a_resident_clientapp_worker_and_the_same_flower_options(
        tmp_path: Path) -> None:
    route = SuperLinkRoute("10.77.0.2:9443", tmp_path / "ca.pem", tmp_path / "supernode.key")
    cmd = supernode_command(route, port=9094, node_config_file=tmp_path / "node-config.toml")
    assert cmd == [sys.executable, "-m", "node.federated.run_supernode", *Pacing().args(), "--clientapp=worker", "--",
                   "--superlink", "10.77.0.2:9443", "--host", "127.0.0.1", "--port", "9094",
                   "--node-config", str(tmp_path / "node-config.toml"), "--root-certificates", str(tmp_path / "ca.pem"),
                   "--auth-supernode-private-key", str(tmp_path / "supernode.key")]


def test_without_tls_the_supernode_says_insecure_and_presents_no_key(tmp_path: Path) -> None:
    cmd = supernode_command(SuperLinkRoute("127.0.0.1:9092", None), port=9100, node_config_file=tmp_path / "n.toml")
    assert cmd[-1] == "--insecure"
    assert "--auth-supernode-private-key" not in cmd
    with pytest.raises(ValueError, match="authenticates with its key over TLS only"):
        SuperLinkRoute("127.0.0.1:9092", None, tmp_path / "supernode.key")


def test_the_supernode_runs_with_the_flower_environment_the_coordinator_and_deploy_use(tmp_path: Path) -> None:
    extra = {"PATH": "/usr/bin", "NO_PROXY": "proxy.example", "HOME": "/home/metai"}
    base = {**os.environ, **extra}  # serve hands its own environment on, as deploy's flower_env does
    ours = supernode_env(tmp_path / "flwr-home", base)
    theirs = flower_env(tmp_path, extra)  # deploy's: the coordinator's flwr_env plus the SuperExec poll interval
    assert ours == theirs | {"FLWR_HOME": str((tmp_path / "flwr-home").resolve())}
    assert {k: v for k, v in flwr_env(tmp_path / "flwr-home", base).items() if k.startswith("FLWR_")}.items() <= \
        ours.items()
    assert supernode_env(tmp_path, {**base, "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "2"})[
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] == "2"


def test_the_node_config_names_the_node_its_signer_and_chain(tmp_path: Path) -> None:
    config = supernode_node_config(tmp_path / "node", signer_socket=tmp_path / "s" / "agent.sock",
                                   rpc_url="http://chain.hospital.example:8545")
    assert config == {"node-dir": str((tmp_path / "node").resolve()), "signer-socket": str(tmp_path / "s/agent.sock"),
                      "rpc-url": "http://chain.hospital.example:8545"}
    assert supernode_node_config(tmp_path / "node") == {"node-dir": str((tmp_path / "node").resolve())}


def test_the_clientapp_takes_the_chain_url_from_its_node_config_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAI_NODE_RPC_URL", "http://127.0.0.1:8545")

    def context(node_config: dict[str, str]) -> Context:
        return Context(run_id=1, node_id=1, node_config=node_config, state=RecordDict(), run_config={})  # type: ignore[arg-type]

    assert rpc_url(context({"node-dir": "/n", "rpc-url": "http://chain.hospital.example:8545"})) == \
        "http://chain.hospital.example:8545"
    assert rpc_url(context({"node-dir": "/n"})) == "http://127.0.0.1:8545"


def test_an_unknown_isolation_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="isolation is 'threads'; expected one of worker, subprocess"):
        supernode_command(SuperLinkRoute("127.0.0.1:9092", None), port=9100, node_config_file=tmp_path / "n.toml",
                          isolation="threads")
