"""A deployment shared by a module's refusal tests, set up once with a study in every state.

A refused call reverts while its gas is estimated, before anything is sent, so it leaves the
chain as it was: the tests that only expect refusals can share one deployment per module
instead of paying for a fresh one per test. The deployment is undone when the module ends, and
these modules take no function-scoped ``exchange``: a session deployment first made inside the
module's snapshot would be undone with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3.contract import Contract

from contracts.chain import Chain
from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.exchange import Exchange
from contracts.roles import Role
from contracts.studies import StudyRequest
from deploy.anvil import AnvilNode, revert_to, snapshot
from deploy.deployer import deploy_contracts
from tests.chain_steps import contribute, hospital_dataset

TASK = keccak(text="refusal world task")
ROOT = keccak(text="refusal world cohort")
UPDATE = keccak(text="refusal world update")
MODEL = keccak(text="refusal world model")
LINEAGE = keccak(text="refusal world lineage bundle")
#: The consent patient 0 holds in the world (and nobody else does).
WORLD_SCOPE = Scope(hospital="0x" + "11" * 20, purpose=Purpose.DS, disease=7, study_id=3)
#: The consent patient 1 holds, for any hospital and study, until ``World.expiry``.
EXPIRING_SCOPE = Scope(purpose=Purpose.GRU)


@dataclass(frozen=True)
class World:
    """One deployment with studies in each state a gated function needs.

    ``studies`` maps a state name to a study id: ``requested`` (both hospitals pending),
    ``approved`` (both approved, not started), ``running`` (started, no contribution),
    ``contributed`` (hospital 1 contributed round 1), ``both`` (both hospitals contributed round 1),
    ``recorded`` (a one-round study whose round is recorded: no round is open any more).
    """

    exchange: Exchange
    accounts: dict[str, LocalAccount]
    studies: dict[str, int]
    dataset: int
    datasets: dict[str, int]  # the test dataset (tests/chain_steps.py) of hospital and hospital2, by actor
    expiry: int  # when patient 1's consent under EXPIRING_SCOPE lapses (unix seconds)

    @property
    def chain(self) -> Chain:
        """The chain the world lives on."""
        return self.exchange.chain

    def contract(self, name: str) -> Contract:
        """The deployed contract ``name`` bound to its ABI."""
        clients = {
            "ConsortiumRoles": self.exchange.roles, "DatasetRegistry": self.exchange.datasets,
            "StudyRegistry": self.exchange.studies, "ConsentRegistry": self.exchange.consent,
        }
        return clients[name].contract

    def function(self, contract: str, name: str, *args: Any) -> Any:
        """The unsent call ``contract.name(*args)``."""
        return self.contract(contract).functions[name](*args)


def build_world(chain: Chain, actors: Any) -> World:
    """Deploy the contracts and walk five studies into the states the refusal tests need."""
    deployment = deploy_contracts(chain, actors.admin, initial_roles=[
        (Role.HOSPITAL, actors.hospital.address),
        (Role.HOSPITAL, actors.hospital2.address),
        (Role.HOSPITAL, actors.outsider_hospital.address),
        (Role.RESEARCHER, actors.researcher.address),
        (Role.COORDINATOR, actors.coordinator.address),
    ])
    ex = Exchange(chain, deployment)
    req = StudyRequest(purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM,
                       hospitals=(actors.hospital.address, actors.hospital2.address),
                       task_code_hash=TASK, rounds=2, privacy_budget=1000)
    one_round = StudyRequest(**{**req.__dict__, "rounds": 1})
    studies: dict[str, int] = {}
    for state in ("requested", "approved", "running", "contributed", "both", "recorded"):
        studies[state], _ = ex.studies.request(actors.researcher, one_round if state == "recorded" else req)
        if state == "requested":
            continue
        for h in (actors.hospital, actors.hospital2):
            ex.studies.approve(h, studies[state])
        if state == "approved":
            continue
        ex.studies.start(actors.coordinator, studies[state])
        if state == "running":
            continue
        contribute(ex, actors.hospital, studies[state], 1, ROOT, 5, UPDATE)
        if state == "both":
            contribute(ex, actors.hospital2, studies[state], 1, ROOT, 6, UPDATE)
        if state == "recorded":
            ex.studies.record_round(actors.coordinator, studies[state], 1, MODEL, [actors.hospital.address])
    ex.consent.grant(actors.patients[0], WORLD_SCOPE, Kind.CT_SINOGRAM, NO_EXPIRY)
    expiry = int(chain.w3.eth.get_block("latest")["timestamp"]) + 10**6
    ex.consent.grant(actors.patients[1], EXPIRING_SCOPE, Kind.IMAGE | Kind.CT_SINOGRAM, expiry)
    dataset, _ = ex.datasets.register(actors.hospital, keccak(text="world dataset"), 4, Kind.CT_SINOGRAM, "CT",
                                      synthetic=True)
    datasets = {name: hospital_dataset(ex, account) for name, account in
                (("hospital", actors.hospital), ("hospital2", actors.hospital2))}
    accounts = {
        "admin": actors.admin, "hospital": actors.hospital, "hospital2": actors.hospital2,
        "outsider_hospital": actors.outsider_hospital, "researcher": actors.researcher,
        "coordinator": actors.coordinator, "patient": actors.patients[0], "stranger": actors.stranger,
        "patient1": actors.patients[1],
    }
    return World(exchange=ex, accounts=accounts, studies=studies, dataset=dataset, datasets=datasets,
                 expiry=expiry)


@contextmanager
def undone(anvil: AnvilNode) -> Iterator[None]:
    """Undo the chain changes made inside the block (evm_snapshot / evm_revert)."""
    mark = snapshot(anvil.rpc_url)
    try:
        yield
    finally:
        revert_to(anvil.rpc_url, mark)


@pytest.fixture(scope="module")
def world(anvil: AnvilNode, chain: Chain, actors: Any) -> Iterator[World]:
    """A deployment shared by one module's tests; they must only make calls that revert.

    Built inside a chain snapshot that is reverted when the module ends, so the accounts' nonces,
    the block number and the clock are left as the next module expects them.
    """
    with undone(anvil):
        yield build_world(chain, actors)
