"""The Anvil launcher: loopback only, stopped by PID, clear failures."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from deploy.anvil import AnvilNode, free_port, rpc, start_anvil, stop_anvil
from deploy.errors import ServiceStartError


def test_listens_on_loopback_and_stops_by_pid(tmp_path: Path) -> None:
    node = start_anvil(tmp_path)
    assert node.rpc_url.startswith("http://127.0.0.1:")
    assert int(rpc(node.rpc_url, "eth_chainId"), 16) == 31337
    stop_anvil(node)
    with pytest.raises(ProcessLookupError):
        os.kill(node.pid, 0)


def test_port_in_use_is_reported_with_the_log(tmp_path: Path) -> None:
    port = free_port()
    first = start_anvil(tmp_path / "a", port=port)
    try:
        with pytest.raises(ServiceStartError, match="anvil exited"):
            start_anvil(tmp_path / "b", port=port, timeout=10)
    finally:
        stop_anvil(first)


def test_a_record_whose_pid_now_names_another_process_stops_nothing(tmp_path: Path) -> None:
    node = start_anvil(tmp_path)
    try:
        assert node.start_time is not None
        assert AnvilNode.from_json(node.to_json()) == node
        stop_anvil(dataclasses.replace(node, start_time=node.start_time - 1))  # as if the PID had been reused
        assert int(rpc(node.rpc_url, "eth_chainId"), 16) == 31337
    finally:
        stop_anvil(node)
    with pytest.raises(ProcessLookupError):
        os.kill(node.pid, 0)
