"""A chain started with --state keeps all state and events across a restart."""

from __future__ import annotations

from pathlib import Path

from eth_account import Account
from eth_utils.crypto import keccak

from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope, Use
from contracts.exchange import Exchange
from contracts.roles import Role
from deploy.anvil import start_anvil, stop_anvil
from deploy.deployer import deploy_contracts


def test_state_and_events_survive_restart(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    node = start_anvil(tmp_path / "run", state_file=state)
    try:
        chain = Chain(node.rpc_url)
        admin, hospital = Account.from_key(node.dev_keys[0]), Account.from_key(node.dev_keys[1])
        patient = Account.create()
        deployment = deploy_contracts(chain, admin, initial_roles=[(Role.HOSPITAL, hospital.address)])
        ex = Exchange(chain, deployment)
        ex.datasets.register(hospital, keccak(b"root"), 10, Kind.CT_SINOGRAM, "CT", synthetic=True)
        ex.consent.relay(admin, ex.consent.sign_grant(patient, Scope(purpose=Purpose.HMB), Kind.CT_SINOGRAM, NO_EXPIRY))
        before = [(e.name, e.block_number, e.tx_hash) for e in ex.events()]
        height = chain.block_number
    finally:
        stop_anvil(node)
    assert state.exists()

    node = start_anvil(tmp_path / "run", state_file=state)
    try:
        ex = Exchange(Chain(node.rpc_url), deployment)
        assert ex.chain.block_number == height
        assert [(e.name, e.block_number, e.tx_hash) for e in ex.events()] == before
        assert ex.datasets.dataset(1).merkle_root == keccak(b"root")
        use = Use(hospital=hospital.address, kinds=Kind.CT_SINOGRAM, purpose=Purpose.HMB)
        assert ex.consent.permits(patient.address, use)
        assert ex.consent.nonce(patient.address) == 1
        assert ex.roles.has(Role.HOSPITAL, hospital.address)
    finally:
        stop_anvil(node)
