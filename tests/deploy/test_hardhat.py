"""The Hardhat launcher: loopback only, funded fresh keys, stopped by PID, its files kept to its run directory."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from eth_account import Account

from deploy.devchain import rpc
from deploy.errors import ServiceStartError, ToolMissing
from deploy.hardhat import DEV_BALANCE, HARDFORK, HardhatNode, start_hardhat, stop_hardhat
from deploy.process import free_port

REPO = Path(__file__).resolve().parent.parent.parent


def _pinned_version() -> str:
    return str(json.loads((REPO / "package.json").read_text())["dependencies"]["hardhat"])


def test_listens_on_loopback_and_stops_by_pid(tmp_path: Path) -> None:
    node = start_hardhat(tmp_path)
    try:
        assert node.rpc_url.startswith("http://127.0.0.1:")
        assert int(rpc(node.rpc_url, "eth_chainId"), 16) == 31337
        assert rpc(node.rpc_url, "web3_clientVersion").startswith(f"HardhatNetwork/{_pinned_version()}/")
    finally:
        stop_hardhat(node)
    with pytest.raises(ProcessLookupError):
        os.kill(node.pid, 0)


def test_every_dev_key_is_fresh_and_funded(tmp_path: Path) -> None:
    first, second = start_hardhat(tmp_path / "a", accounts=3), start_hardhat(tmp_path / "b", accounts=3)
    try:
        for node in (first, second):
            assert len(node.dev_keys) == 3
            for key in node.dev_keys:
                balance = rpc(node.rpc_url, "eth_getBalance", [Account.from_key(key).address, "latest"])
                assert int(balance, 16) == DEV_BALANCE
        assert not set(first.dev_keys) & set(second.dev_keys)  # made for each start, not a well-known mnemonic
    finally:
        stop_hardhat(first)
        stop_hardhat(second)


def test_the_chain_runs_the_contracts_evm_version(tmp_path: Path) -> None:
    """Cancun: blocks carry a blob gas field (EIP-4844), which no earlier hardfork has."""
    node = start_hardhat(tmp_path)
    try:
        assert HARDFORK == "cancun"
        assert "blobGasUsed" in rpc(node.rpc_url, "eth_getBlockByNumber", ["latest", False])
    finally:
        stop_hardhat(node)


def test_port_in_use_is_reported_with_the_log(tmp_path: Path) -> None:
    first = start_hardhat(tmp_path / "a", port=free_port())
    try:
        with pytest.raises(ServiceStartError, match=r"hardhat exited with 1:[\s\S]*EADDRINUSE"):
            start_hardhat(tmp_path / "b", port=first.port, timeout=30)
    finally:
        stop_hardhat(first)


def test_missing_hardhat_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ToolMissing, match=r"Hardhat not found at .*node_modules/hardhat.*run `npm ci`"):
        start_hardhat(tmp_path / "run", root=tmp_path)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_files_with_keys_are_the_owners_alone(tmp_path: Path) -> None:
    node = start_hardhat(tmp_path)
    try:
        for path in (node.config_file, tmp_path / "hardhat.json"):
            assert path.stat().st_mode & 0o777 == 0o600, path
        assert HardhatNode.from_json((tmp_path / "hardhat.json").read_text()) == node
    finally:
        stop_hardhat(node)


def test_nothing_is_written_to_the_home_directory_and_callers_hardhat_variables_are_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HARDHAT_NETWORK", "no-such-network")  # Hardhat would refuse to start on it
    node = start_hardhat(tmp_path / "run")
    stop_hardhat(node)
    assert list(home.iterdir()) == []
    assert (tmp_path / "run" / "hardhat-home" / "data" / "hardhat-nodejs").is_dir()


def test_a_record_whose_pid_now_names_another_process_stops_nothing(tmp_path: Path) -> None:
    node = start_hardhat(tmp_path)
    try:
        assert node.start_time is not None
        stop_hardhat(dataclasses.replace(node, start_time=node.start_time - 1))  # as if the PID had been reused
        assert int(rpc(node.rpc_url, "eth_chainId"), 16) == 31337
    finally:
        stop_hardhat(node)
    with pytest.raises(ProcessLookupError):
        os.kill(node.pid, 0)
