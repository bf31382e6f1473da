"""The hospital's signing agent: unlocks once, signs contributions for the round processes,
and nothing else."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.datause import Kind, Purpose
from contracts.studies import StudyRequest
from deploy.signers import SignerProcess, start_signer, stop_signer
from node.signer import RemoteSigner, SignerError
from tests.chain_steps import contribute, hospital_dataset
from tests.conftest import NODE_PASSPHRASE
from tests.federated.conftest import TASK


@pytest.fixture
def agent(hospitals, tmp_path: Path) -> Iterator[SignerProcess]:  # type: ignore[no-untyped-def]
    secret = tmp_path / "passphrase"
    secret.write_text(NODE_PASSPHRASE)
    process = start_signer(hospitals[0].node.dir, secret, tmp_path / "signer.log", "alpha")
    try:
        yield process
    finally:
        stop_signer(process)


def test_agent_signs_a_contribution(agent: SignerProcess, hospitals, study, exchange) -> None:
    node = hospitals[0].node
    signer = RemoteSigner(agent.socket)
    assert signer.address == node.address
    assert oct(agent.socket.parent.stat().st_mode & 0o777) == "0o700"
    assert oct(Path(str(agent.socket) + ".key").stat().st_mode & 0o777) == "0o600"
    datasets = (hospital_dataset(exchange, node.account),)  # registered with the node's own key
    tx = contribute(exchange, signer, study, 1, b"\x11" * 32, 12, b"\x22" * 32,  # type: ignore[arg-type]
                    dataset_ids=datasets)
    assert tx.block_number > 0
    assert exchange.studies.contribution_of(study, 1, node.address).cohort_count == 12


def test_agent_signs_nothing_else(agent: SignerProcess, hospitals, actors, exchange) -> None:
    from tasks import task_code_hash

    pending, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(hospitals[0].node.address,),
        task_code_hash=task_code_hash(TASK), rounds=1))
    signer = RemoteSigner(agent.socket)
    with pytest.raises(SignerError, match="is not to the StudyRegistry"):
        exchange.chain.send_value(signer, actors.researcher.address, 1)  # type: ignore[arg-type]
    with pytest.raises(SignerError, match="is not a call of contribute"):
        exchange.studies.approve(signer, pending)  # type: ignore[arg-type]
    assert "refused to sign" in agent.log_file.read_text()


def test_a_client_without_the_key_is_turned_away(agent: SignerProcess) -> None:
    key_file = Path(str(agent.socket) + ".key")
    real = key_file.read_bytes()
    key_file.write_bytes(b"\x00" * 32)
    try:
        with pytest.raises(SignerError, match="not reachable"):
            RemoteSigner(agent.socket)
    finally:
        key_file.write_bytes(real)
    assert RemoteSigner(agent.socket).address  # the agent kept serving


def test_stopping_removes_socket_and_key(agent: SignerProcess) -> None:
    stop_signer(agent)
    assert not agent.socket.parent.exists()
    assert not agent.running()
