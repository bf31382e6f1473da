"""What the audit tests share: the auditor's view of the session's deployment, and the chain's own
answers (``permitsBatch``, ``explain``, ``hasRole`` by ``eth_call`` at a block) to compare it with.

The chain is driven with the project's client (``contracts``), as the other tests do; the
audit package under test reads it with its own code only.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_abi.abi import decode, encode
from eth_utils.crypto import keccak

import audit
from contracts.errors import ContractRevert, UnknownRevert
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.reverts import decode_revert
from deploy.anvil import AnvilNode

_USE = "(address,uint8,uint8,uint32,uint256)"
_PERMITS_BATCH = keccak(text=f"permitsBatch(address[],{_USE})")[:4]
_EXPLAIN = keccak(text=f"explain(address,{_USE})")[:4]
_HAS_ROLE = keccak(text="hasRole(bytes32,address)")[:4]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, deployed_exchange: Exchange) -> Path:
    """The session deployment's manifest, as ``deploy`` writes it."""
    path = tmp_path_factory.mktemp("audit") / "deployment.json"
    write_manifest(deployed_exchange.deployment, path)
    return path


@pytest.fixture(scope="module")
def deployment(manifest: Path) -> audit.Deployment:
    return audit.read_manifest(manifest)


@pytest.fixture(scope="module")
def artifacts(deployment: audit.Deployment) -> dict[str, audit.Artifact]:
    found = audit.read_artifacts()
    audit.check_bytecode(deployment, found)
    return found


@pytest.fixture(scope="module")
def reader(anvil: AnvilNode, deployment: audit.Deployment) -> audit.ChainReader:
    return audit.connect(anvil.rpc_url, deployment, chunk=7)  # small chunks: a scenario spans several


def use_tuple(use: audit.Use) -> tuple[str, int, int, int, int]:
    """``use`` as the contract's ``Use`` struct."""
    return (use.hospital, use.kinds, use.purpose, use.disease, use.study_id)


@cache
def _revert(data: bytes) -> ContractRevert | UnknownRevert:
    """``data`` decoded (cached: a grid checked at every block meets the same refusals again and again)."""
    return decode_revert(data)


@cache
def _explain_call(patient: str, use: audit.Use) -> bytes:
    return _EXPLAIN + encode(["address", _USE], [patient, use_tuple(use)])


def eth_calls(rpc_url: str, to: str, calls: Sequence[bytes],
              block: int) -> list[bytes | ContractRevert | UnknownRevert]:
    """Run ``calls`` against ``to`` in the state after ``block``, in one JSON-RPC batch; each answer is
    the result or the decoded revert."""
    body: Any = [{"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [{"to": to, "data": "0x" + data.hex()},
                                                                            hex(block)]}
            for i, data in enumerate(calls)]
    answers = sorted(requests.post(rpc_url, json=body, timeout=60).json(), key=lambda a: a["id"])
    out: list[bytes | ContractRevert | UnknownRevert] = []
    for answer in answers:
        if "result" in answer:
            out.append(bytes.fromhex(answer["result"][2:]))
        else:
            data = answer["error"].get("data")
            if isinstance(data, dict):  # Hardhat's network nests the revert data beside its own message
                data = data.get("data")
            assert isinstance(data, str), f"an eth_call at block {block} failed without revert data: {answer}"
            out.append(_revert(bytes.fromhex(data[2:])))
    return out


def chain_permits(rpc_url: str, registry: str, patients: Sequence[str], uses: Sequence[audit.Use],
                  block: int) -> list[list[bool]]:
    """``permitsBatch(patients, use)`` at ``block`` for each use: one row of answers per use."""
    calls = [_PERMITS_BATCH + encode(["address[]", _USE], [list(patients), use_tuple(u)]) for u in uses]
    rows = []
    for answer in eth_calls(rpc_url, registry, calls, block):
        assert isinstance(answer, bytes), f"permitsBatch reverted at block {block}: {answer}"
        rows.append([bool(x) for x in decode(["bool[]"], answer)[0]])
    return rows


def chain_explanations(rpc_url: str, registry: str, pairs: Sequence[tuple[str, audit.Use]],
                       block: int) -> list[ContractRevert | None]:
    """``explain(patient, use)`` at ``block`` for each pair: None where it returns, else its custom error."""
    calls = [_explain_call(p, u) for p, u in pairs]
    out: list[ContractRevert | None] = []
    for answer in eth_calls(rpc_url, registry, calls, block):
        assert not isinstance(answer, UnknownRevert), f"explain reverted without a custom error: {answer}"
        out.append(None if isinstance(answer, bytes) else answer)
    return out


def chain_has_role(rpc_url: str, roles: str, pairs: Sequence[tuple[bytes, str]], block: int) -> list[bool]:
    """``hasRole(role, account)`` at ``block`` for each pair."""
    calls = [_HAS_ROLE + encode(["bytes32", "address"], [r, a]) for r, a in pairs]
    answers = eth_calls(rpc_url, roles, calls, block)
    assert all(isinstance(a, bytes) for a in answers), f"hasRole reverted at block {block}: {answers}"
    return [bool(decode(["bool"], a)[0]) for a in answers if isinstance(a, bytes)]
