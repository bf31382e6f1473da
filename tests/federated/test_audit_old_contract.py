"""The audit catches a hospital that lost its role and still contributed, on a chain whose StudyRegistry let it.

Today's StudyRegistry refuses ``contribute`` from an account without HOSPITAL_ROLE and ``recordRound`` of a
contributor that lost it (``StudyRegistryNotAHospital``), so on the project's own chain such a round cannot
exist; an older contract, or another chain's, may have let it through. The auditor does not trust the contract
for this: it replays the role registry's events and checks every contributor of every round held the role at
its contribution's block and when the round was recorded (``role.contributor`` in audit/verify.py).

Here that older contract is real. This test derives it from the current source by removing exactly the two
role checks (asserted present once each, so a change to the source breaks the test loudly), compiles it with
the project's compiler and settings (contracts/build.py), deploys it with the deployed registry's constructor
arguments (its immutables: the role and dataset registries) and puts its runtime code at the deployed
StudyRegistry's address inside the test's Anvil snapshot. A study of three hospitals then runs through the
coordinator's ``run_study`` with the scripted nodes of tests/coordinator/lineage_runs.py; at the first message
of round 2 the admin revokes the second hospital's role, which contributes anyway and is aggregated. The audit
must name exactly that hospital, in round 2, with the blocks, and no other. At the moment of that contribution,
the unmodified code is put back for a moment (in a nested snapshot) and refuses the very same contribution, and
the recording of a round with it: the gates this test removed are what closes the gap on today's chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import solcx
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from flwr.app import Message

import audit
from audit.verify import verify_study
from contracts import build
from contracts.artifacts import Artifact, load_artifact
from contracts.chain import Chain, TxResult
from contracts.enums import StudyStatus
from contracts.errors import ContractRevert
from contracts.events import RoundRecorded
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.roles import Role
from coordinator.federation import run_study
from coordinator.lineage import bundle_folder
from coordinator.study_log import study_folder
from deploy.anvil import AnvilNode, rpc
from tests.conftest import Actors, chain_restored
from tests.coordinator.lineage_runs import Nodes, grid_identity, start_study
from tests.coordinator.round_replies import ScriptedGrid

pytestmark = pytest.mark.slow

SOURCE = "contracts/src/StudyRegistry.sol"
#: ``contribute``'s role gate (the end of its parameter list, which no other function shares), and without it.
CONTRIBUTE_GATE = "        bytes32 updateHash\n    ) external onlyRole(Roles.HOSPITAL) {\n"
CONTRIBUTE_OPEN = "        bytes32 updateHash\n    ) external {\n"
#: ``recordRound``'s check of each contributor's role (after its check of the contribution: ``request`` has the
#: same role line for the hospitals it names), and without it.
RECORD_GATE = ("                revert StudyRegistryMissingContribution(studyId, round, h);\n            }\n"
               "            if (!roles.hasRole(Roles.HOSPITAL, h)) revert StudyRegistryNotAHospital(h);\n")
RECORD_OPEN = "                revert StudyRegistryMissingContribution(studyId, round, h);\n            }\n"


@dataclass
class RevokedInRoundTwo:
    """The study's nodes, with the admin revoking ``revoked``'s hospital role at the first message of round 2.

    When ``revoked`` answers in round 2, the registry's original ``code`` is put back inside a nested snapshot,
    twice, to try the same contribution and then a round record listing it; what the original code says is
    kept in ``refusals`` (the chain is back to the old contract afterwards each time).
    """

    nodes: Nodes
    anvil: AnvilNode
    registry: str
    original_code: str
    admin: LocalAccount
    coordinator: LocalAccount
    revoked: LocalAccount
    revocation: TxResult | None = None
    refusals: dict[str, ContractRevert | None] = field(default_factory=dict)

    def __call__(self, node: int, round_: int, sent: list[np.ndarray]) -> Message | None:
        exchange = self.nodes.exchange
        if round_ == 2 and self.revocation is None:
            self.revocation = exchange.roles.revoke(self.admin, Role.HOSPITAL, self.revoked.address)
        if round_ != 2 or self.nodes.hospitals[node - 1] is not self.revoked:
            return self.nodes(node, round_, sent)
        with chain_restored(self.anvil):
            rpc(self.anvil.rpc_url, "anvil_setCode", [self.registry, self.original_code])
            self.refusals["contribute"] = self._refusal(lambda: self.nodes(node, round_, sent))
        answer = self.nodes(node, round_, sent)
        with chain_restored(self.anvil):
            rpc(self.anvil.rpc_url, "anvil_setCode", [self.registry, self.original_code])
            self.refusals["recordRound"] = self._refusal(lambda: exchange.studies.record_round(
                self.coordinator, self.nodes.study_id, round_, keccak(text="a round with the revoked hospital"),
                [self.revoked.address]))
        return answer

    @staticmethod
    def _refusal(action: Any) -> ContractRevert | None:
        try:
            action()
        except ContractRevert as refused:
            return refused
        return None


def test_a_contribution_by_a_hospital_that_lost_its_role_on_an_old_contract_is_reported(
        anvil: AnvilNode, exchange: Exchange, actors: Actors, tmp_path: Path) -> None:
    from coordinator import federation

    # The old contract: today's source without the two role gates, compiled as contracts/build.py compiles.
    compiler_input = build.standard_input()
    source = compiler_input["sources"][SOURCE]["content"]
    assert source.count(CONTRIBUTE_GATE) == 1, "contribute's role gate is no longer as this test expects"
    assert source.count(RECORD_GATE) == 1, "recordRound's role check is no longer as this test expects"
    old_source = source.replace(CONTRIBUTE_GATE, CONTRIBUTE_OPEN).replace(RECORD_GATE, RECORD_OPEN)
    assert old_source.count("onlyRole(Roles.HOSPITAL) {") == 2  # approve and decline keep theirs
    assert old_source.count("revert StudyRegistryNotAHospital(h)") == 1  # request keeps its check
    compiler_input["sources"][SOURCE]["content"] = old_source
    # Only this contract's output: the settings (EVM version, optimizer) are standard_input()'s.
    compiler_input["settings"]["outputSelection"] = {SOURCE: {"StudyRegistry": ["abi", "evm.bytecode.object"]}}
    compiled = solcx.compile_standard(compiler_input, solc_binary=build.SHIM)
    assert [e for e in compiled.get("errors", []) if e["severity"] == "error"] == []
    old = compiled["contracts"][SOURCE]["StudyRegistry"]
    current = load_artifact("StudyRegistry")
    assert old["abi"] == current.abi
    assert "0x" + old["evm"]["bytecode"]["object"] != current.bytecode

    # A study requested, approved and started under today's contract.
    study_id, cfg = start_study(exchange, actors, dp=False)
    registry = exchange.studies.address
    roles_address = exchange.deployment.address("ConsortiumRoles")
    datasets_address = exchange.deployment.address("DatasetRegistry")
    hospitals = (actors.hospital, actors.hospital2, actors.outsider_hospital)
    before = (exchange.studies.study(study_id), exchange.studies.hospitals_of(study_id),
              [exchange.studies.decision_of(study_id, h.address) for h in hospitals], exchange.studies.count())

    # StudyRegistry has immutables (roles, datasets), which live in the runtime code: deploy the old contract
    # with the same constructor arguments and copy its runtime code onto the deployed registry's address.
    # A Chain of its own, so the session's does not remember the throwaway address as a StudyRegistry.
    original_code = rpc(anvil.rpc_url, "eth_getCode", [registry, "latest"])
    variant = Chain(anvil.rpc_url).deploy(actors.admin, Artifact("StudyRegistry", old["abi"],
                                                                 "0x" + old["evm"]["bytecode"]["object"]),
                                          roles_address, datasets_address)
    old_code = rpc(anvil.rpc_url, "eth_getCode", [variant.contract_address, "latest"])
    assert roles_address[2:].lower() in old_code
    assert datasets_address[2:].lower() in old_code
    assert old_code != original_code
    rpc(anvil.rpc_url, "anvil_setCode", [registry, old_code])
    assert rpc(anvil.rpc_url, "eth_getCode", [registry, "latest"]) == old_code
    # Same storage layout: the study stored under today's code reads the same under the old one.
    assert (exchange.studies.study(study_id), exchange.studies.hospitals_of(study_id),
            [exchange.studies.decision_of(study_id, h.address) for h in hospitals],
            exchange.studies.count()) == before
    views = exchange.chain.w3.eth.contract(address=registry, abi=current.abi).functions
    assert (views.roles().call(), views.datasets().call()) == (roles_address, datasets_address)

    nodes = RevokedInRoundTwo(Nodes(exchange, study_id, hospitals, cfg.anchor), anvil, registry, original_code,
                              actors.admin, actors.coordinator, actors.hospital2)
    model_dir = tmp_path / "models"
    with pytest.MonkeyPatch.context() as patch, grid_identity():
        patch.setattr(federation, "_write_card", lambda *args, **kwargs: None)  # no model card: not what is tested
        run_study(ScriptedGrid([1, 2, 3], nodes), cfg, exchange,  # type: ignore[arg-type]
                  actors.coordinator, model_dir)

    revoked = actors.hospital2.address
    # Today's code refuses both the contribution and a round aggregating it.
    refused = nodes.refusals["contribute"]
    assert refused is not None, "today's contract took a contribution from a hospital without the role"
    assert (refused.error, refused.values) == ("AccessControlUnauthorizedAccount",
                                               {"account": revoked, "neededRole": Role.HOSPITAL.value})
    refused = nodes.refusals["recordRound"]
    assert refused is not None, "today's contract recorded a round aggregating a hospital without the role"
    assert (refused.error, refused.values) == ("StudyRegistryNotAHospital", {"hospital": revoked})
    # The old one took it: the hospital contributed after its revocation and round 2 aggregated it.
    assert nodes.revocation is not None
    assert not exchange.roles.has(Role.HOSPITAL, revoked)
    assert exchange.studies.study(study_id).status == StudyStatus.COMPLETED
    contribution = exchange.studies.contribution_of(study_id, 2, revoked)
    assert contribution is not None
    assert contribution.block_number > nodes.revocation.block_number
    recorded = [e for e in exchange.events(from_block=contribution.block_number)
                if isinstance(e, RoundRecorded) and e.study_id == study_id and e.round == 2]
    assert len(recorded) == 1
    assert sorted(recorded[0].contributors) == sorted([actors.hospital.address, revoked])
    record_block = recorded[0].block_number

    manifest = tmp_path / "deployment.json"
    write_manifest(exchange.deployment, manifest)
    deployment = audit.read_manifest(manifest)
    report = verify_study(audit.connect(anvil.rpc_url, deployment), deployment, audit.read_artifacts(), study_id,
                          bundle_folder(study_folder(model_dir, study_id)))
    # Compared without case: the check of RoundRecorded names the address as the event's array carries it
    # (lower case), the others checksummed.
    found = {(f.where.lower(), f.message.lower()) for f in report.findings if f.check == "role.contributor"}
    assert found == {(where.lower(), message.lower()) for where, message in (
        (f"round 2, hospital {revoked}",
         f"did not hold the hospital role at its contribution's block {contribution.block_number}"),
        (f"round 2, hospital {revoked}",
         f"did not hold the hospital role when the round was recorded (block {record_block})"),
        (f"RoundRecorded in block {record_block}",
         f"aggregated {revoked}, which did not hold the hospital role at that block"),
    )}, report.text()
    # The hospitals that kept their role pass: round 1's three contributors and round 2's first, three checks each.
    assert report.passed["role.contributor"] == 3 * 4, report.text()
    kept = (actors.hospital.address, actors.outsider_hospital.address)
    assert not [f for f in report.findings
                if f.check.startswith("role.") and any(a.lower() in f.line().lower() for a in kept)], report.text()
