"""What the ``metai-admin`` tests share: the command line set up for the session's deployment."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from typer.testing import CliRunner

from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from tests.conftest import Actors


def admin_key(account: LocalAccount) -> str:
    """``account``'s private key as 0x hex, as METAI_ADMIN_KEY takes it."""
    return "0x" + bytes(account.key).hex()


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: Exchange, actors: Actors) -> CliRunner:
    """The commands with the deploy settings of the session's deployment, signed by its admin."""
    monkeypatch.chdir(tmp_path)
    write_manifest(exchange.deployment, tmp_path / "deployment.json")
    monkeypatch.setenv("METAI_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("METAI_RPC_URL", exchange.chain.rpc_url)
    monkeypatch.setenv("METAI_MANIFEST", str(tmp_path / "deployment.json"))
    monkeypatch.setenv("METAI_ADMIN_KEY", admin_key(actors.admin))
    return CliRunner()


def proposal(stdout: str) -> dict[str, str]:
    """The ``name: value`` lines a ``--calldata`` command prints under its first line."""
    return {name: value.strip() for name, _, value in (line.partition(":") for line in stdout.splitlines()[1:])}
