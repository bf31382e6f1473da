"""No false alarm: ``metai-audit verify`` passes 20 untouched studies generated at random, and every
cohort in their bundles is the set an oracle written here computes from the scenario alone.

Each example picks 2 to 4 of four hospital nodes (each holding five enrolled patients with one CT
sinogram each, four of them in the dataset the node registered, one not) and 2 to 4 rounds, with
or without differential privacy. Before each round, patients grant (under random scopes: this
hospital, another or any; GRU, HMB or a disease; this study, another or any; kinds that do or do
not cover sinograms; with or without an expiry) and revoke, and the chain's clock moves on so
that expiries fall between rounds. Each round, every hospital computes its cohort with the node's
own code at the block it reads, anchors it with the node's manifest and replies; the coordinator's
``run_study`` aggregates and writes the lineage bundle; the audit then reads chain and bundle.

The producer is light (no Flower processes, no training: the scripted update of
tests/coordinator/lineage_runs.py), so twenty studies take minutes; the cohort, manifest,
anchoring, aggregation and bundle code are the real ones. The oracle knows nothing of the
contracts or the node: it applies the scenario's grants and revocations to a table of its own
and asks which patients' consents cover the study's use at each cohort block's time.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from flwr.app import Message
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import audit
from audit.verify import verify_study
from contracts.datause import ANY_HOSPITAL, ANY_STUDY, NO_EXPIRY, Kind, Purpose, Scope, Use
from contracts.enums import StudyStatus
from contracts.errors import ContractRevert
from contracts.exchange import Exchange
from contracts.manifest import write_manifest
from contracts.studies import StudyRequest
from coordinator.federation import run_study
from coordinator.lineage import bundle_folder
from coordinator.study_log import study_folder
from deploy.anvil import advance_time
from node.cohort import build_cohort
from node.lineage import manifest_sha256, read_sent_manifest
from node.node import Node
from node.training import anchor_contribution
from tests.conftest import AnvilNode, chain_restored
from tests.coordinator.lineage_runs import grid_identity, trained
from tests.coordinator.round_replies import ScriptedGrid, config, error_reply, reply
from tests.federated.conftest import TASK, populate

pytestmark = pytest.mark.slow

#: Patients per hospital in its registered dataset, and those enrolled whose record it never registered.
REGISTERED, UNREGISTERED = 4, 1
HOUR = 3600
DISEASE = 7
FAR = 2**40


@dataclass
class Site:
    """A hospital node and its patients' keys: those whose records it registered, and the others."""

    node: Node
    registered: list[LocalAccount]
    unregistered: list[LocalAccount]

    @property
    def patients(self) -> list[LocalAccount]:
        return self.registered + self.unregistered


@pytest.fixture(scope="module")
def sites(module_make_node, module_exchange: Exchange, tmp_path_factory: pytest.TempPathFactory,  # type: ignore[no-untyped-def]
          ) -> list[Site]:
    """Four hospital nodes, each with five enrolled patients: four records registered, one not. No consents."""
    data = tmp_path_factory.mktemp("random-sites")
    out = []
    for index in range(4):
        node = module_make_node(f"Random Hospital {index}")
        registered = list(populate(node, data / f"r-{index}", f"RND-{index}R", REGISTERED, seed=500 + index).values())
        unregistered = list(populate(node, data / f"u-{index}", f"RND-{index}U", UNREGISTERED, seed=600 + index,
                                     register=False).values())
        out.append(Site(node, registered, unregistered))
    return out


# ---------------------------------------------------------------- the scenario, as data


@dataclass(frozen=True)
class GrantStep:
    """Patient ``patient`` (an index over the study's hospitals' patients) grants under a scope described
    relative to the study: ``hospital`` 0 = the patient's own, 1 = any, 2 = another hospital; ``study``
    0 = this study, 1 = any, 2 = another; ``purpose`` GRU, HMB or DS; ``lifetime`` in seconds or None."""

    patient: int
    hospital: int
    purpose: Purpose
    study: int
    kinds: Kind
    lifetime: int | None


@dataclass(frozen=True)
class RevokeStep:
    """Patient ``patient`` revokes the ``pick``-th scope they granted (modulo how many; none: nothing)."""

    patient: int
    pick: int


@dataclass(frozen=True)
class Interval:
    """What happens before a round: the steps in order, then the clock moves ``wait`` seconds on."""

    steps: tuple[GrantStep | RevokeStep, ...]
    wait: int


@dataclass(frozen=True)
class Scenario:
    hospitals: tuple[int, ...]  # indexes into the four sites, in the study's order
    rounds: int
    dp: bool
    phases: tuple[Interval, ...]  # one per round
    #: Per hospital of the study: whether it seals its proofs (sends only its manifests' hashes).
    sealed: tuple[bool, ...] = ()


_grant = st.builds(
    GrantStep, patient=st.integers(0, 19), hospital=st.sampled_from([0, 0, 0, 1, 2]),
    purpose=st.sampled_from([Purpose.GRU, Purpose.HMB, Purpose.HMB, Purpose.DS]), study=st.sampled_from([0, 1, 1, 2]),
    kinds=st.sampled_from([Kind.CT_SINOGRAM, Kind.CT_SINOGRAM, Kind.CT_SINOGRAM | Kind.IMAGE, Kind.IMAGE]),
    # Lifetimes end half an hour off the hour and the clock moves in whole hours: an expiry never
    # falls within the few seconds a round's own blocks take.
    lifetime=st.sampled_from([None, None, HOUR // 2, 3 * HOUR // 2, 5 * HOUR // 2]))
_revoke = st.builds(RevokeStep, patient=st.integers(0, 19), pick=st.integers(0, 3))
_phase = st.builds(Interval, steps=st.lists(st.one_of(_grant, _revoke), max_size=8).map(tuple),
                   wait=st.sampled_from([0, HOUR, 2 * HOUR]))


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    hospitals = tuple(draw(st.permutations(range(4)))[:draw(st.integers(2, 4))])
    rounds = draw(st.integers(2, 4))
    # Round 1 opens with more happening, so most cohorts start non-empty.
    first = draw(st.builds(Interval, steps=st.lists(_grant, min_size=4, max_size=12).map(tuple), wait=st.just(0)))
    rest = tuple(draw(_phase) for _ in range(rounds - 1))
    sealed = tuple(draw(st.booleans()) for _ in hospitals)
    return Scenario(hospitals, rounds, draw(st.booleans()), (first, *rest), sealed)


# ---------------------------------------------------------------- the oracle


@dataclass
class Oracle:
    """Consents as a table of its own: (patient, hospital, purpose, disease, study) -> (kinds, expiry, revoked)."""

    slots: dict[tuple[str, str, int, int, int], tuple[int, int, bool]] = field(default_factory=dict)

    def copy(self) -> Oracle:
        """The table as it stands (later steps do not change the copy)."""
        return Oracle(dict(self.slots))

    def grant(self, patient: str, scope: Scope, kinds: Kind, expires: int) -> None:
        self.slots[(patient, scope.hospital, int(scope.purpose), scope.disease, scope.study_id)] = (
            int(kinds), expires, False)

    def revoke(self, patient: str, scope: Scope) -> None:
        key = (patient, scope.hospital, int(scope.purpose), scope.disease, scope.study_id)
        if key in self.slots:
            kinds, expires, _ = self.slots[key]
            self.slots[key] = (kinds, expires, True)

    def permitted(self, patients: list[str], hospital: str, study_id: int, at_time: int) -> set[str]:
        """Who lets ``hospital`` use their CT sinograms for health research in ``study_id`` at ``at_time``:
        a consent not revoked, not expired, covering sinograms, naming this hospital or any, this study
        or any, and general or health research (a study of HMB is covered by either, never by a disease)."""
        out = set()
        for p in patients:
            for hospital_ in (hospital, ANY_HOSPITAL):
                for study in (study_id, ANY_STUDY):
                    for purpose in (int(Purpose.HMB), int(Purpose.GRU)):
                        kinds, expires, revoked = self.slots.get((p, hospital_, purpose, 0, study), (0, 0, True))
                        if not revoked and expires > at_time and kinds & int(Kind.CT_SINOGRAM):
                            out.add(p)
        return out


# ---------------------------------------------------------------- playing it


class Player:
    """Plays a scenario's phases on the chain (patients' signed consents, relayed) and mirrors them in the oracle."""

    def __init__(self, exchange: Exchange, relayer: LocalAccount, sites: list[Site], study_id: int) -> None:
        self.exchange = exchange
        self.relayer = relayer
        self.sites = sites
        self.study_id = study_id
        self.oracle = Oracle()
        self.granted: dict[str, list[Scope]] = {}
        #: What was played, one line per step with the block it landed in (for a failure's message).
        self.log: list[str] = []
        # The first hospital's first patient consents for good before round 1 and no step touches them,
        # so every round has a contributor and the study completes; everyone else is the scenario's.
        self.steady = sites[0].registered[0]
        self.patients = [(s, p) for s in sites for p in s.patients if p is not self.steady]
        self._grant(self.steady, Scope(hospital=ANY_HOSPITAL, purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY)

    def _grant(self, patient: LocalAccount, scope: Scope, kinds: Kind, expires: int) -> None:
        consent = self.exchange.consent
        tx = consent.relay(self.relayer, consent.sign_grant(patient, scope, kinds, expires, deadline=FAR))
        self.log.append(f"block {tx.block_number}: {patient.address} grants {scope} kinds {int(kinds)} until {expires}")
        self.oracle.grant(patient.address, scope, kinds, expires)
        self.granted.setdefault(patient.address, []).append(scope)

    def scope(self, step: GrantStep, site: Site) -> Scope:
        others = [s for s in self.sites if s is not site] or [site]
        hospital = {0: site.node.address, 1: ANY_HOSPITAL, 2: others[0].node.address}[step.hospital]
        study = {0: self.study_id, 1: ANY_STUDY, 2: self.study_id + 1}[step.study]
        return Scope(hospital=hospital, purpose=step.purpose, disease=DISEASE if step.purpose == Purpose.DS else 0,
                     study_id=study)

    def play(self, phase: Interval) -> None:
        consent = self.exchange.consent
        for step in phase.steps:
            site, patient = self.patients[step.patient % len(self.patients)]
            if isinstance(step, GrantStep):
                scope = self.scope(step, site)
                now = int(self.exchange.chain.w3.eth.get_block("latest")["timestamp"])
                expires = NO_EXPIRY if step.lifetime is None else now + step.lifetime
                self._grant(patient, scope, step.kinds, expires)
            else:
                scopes = self.granted.get(patient.address, [])
                if not scopes:
                    continue
                scope = scopes[step.pick % len(scopes)]
                try:
                    tx = consent.relay(self.relayer, consent.sign_revoke(patient, scope, deadline=FAR))
                    self.log.append(f"block {tx.block_number}: {patient.address} revokes {scope}")
                except ContractRevert as refused:  # revoked already: the oracle's revoke is a no-op too
                    if refused.error != "ConsentRegistryConsentRevoked":
                        raise
                    self.log.append(f"{patient.address} revokes {scope} again: refused")
                self.oracle.revoke(patient.address, scope)
        if phase.wait:
            advance_time(self.exchange.chain.rpc_url, phase.wait)
            self.log.append(f"the clock moves {phase.wait} s on, to block {self.exchange.chain.block_number}")


@dataclass
class Hospitals:
    """The study's nodes on the scripted grid: each round, build the cohort with the node's code at the
    latest block, anchor it with its manifest, and reply with the scripted update; an empty cohort
    answers with an error (a node has nothing to train on), as the node does."""

    player: Player
    phases: tuple[Interval, ...]
    sites: list[Site]
    sealed: tuple[bool, ...]
    played: set[int] = field(default_factory=set)
    cohorts: dict[tuple[int, str], tuple[int, set[str]]] = field(default_factory=dict)
    #: The oracle's table as it stood when each cohort was built (the steps played so far, no later ones).
    oracles: dict[tuple[int, str], Oracle] = field(default_factory=dict)

    def __call__(self, node_id: int, round_: int, sent: list[np.ndarray]) -> Message | None:
        if round_ not in self.played:  # the round's first message: what happened since the last round
            self.played.add(round_)
            self.player.play(self.phases[round_ - 1])
        node = self.sites[node_id - 1].node
        block = node.exchange.chain.block_number
        cohort = build_cohort(node, self.player.study_id, block)
        self.cohorts[(round_, node.address)] = (block, {m.patient for m in cohort.members})
        self.oracles[(round_, node.address)] = self.player.oracle.copy()
        if cohort.count == 0:
            return error_reply("no record of this hospital may be used at this block", node_id=node_id,
                               round_=round_)
        weights = trained(sent, node_id, round_)
        anchored = anchor_contribution(node, cohort, round_, weights)
        assert anchored.manifest is not None
        if self.sealed[node_id - 1]:  # what the node's ClientApp sends in sealed mode: the manifest's hash alone
            return reply(node.address, weights, cohort.count, root=cohort.root, node_id=node_id, round_=round_,
                         manifest_sha256=manifest_sha256(anchored.manifest))
        return reply(node.address, weights, cohort.count, root=cohort.root, node_id=node_id, round_=round_,
                     manifest=anchored.manifest)


def _study(exchange: Exchange, actors: Any, sites: list[Site], scenario: Scenario) -> int:
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=tuple(s.node.address for s in sites),
        task_code_hash=task_code_hash(TASK), rounds=scenario.rounds,
        privacy_budget=200_000 if scenario.dp else 0))
    for s in sites:
        exchange.studies.approve(s.node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return int(study_id)


@pytest.fixture(scope="module")
def deployment_file(module_exchange: Exchange, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("random-audit") / "deployment.json"
    write_manifest(module_exchange.deployment, path)
    return path


@pytest.fixture
def example_dirs(tmp_path: Path) -> Iterator[Path]:
    """A fresh folder for each example's coordinator output."""
    def folders() -> Iterator[Path]:
        while True:
            yield Path(tempfile.mkdtemp(dir=tmp_path))
    return folders()


@settings(max_examples=int(os.environ.get("RANDOM_STUDIES", "20")), deadline=None, database=None,
          phases=(Phase.generate,),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(scenario=scenarios())
def test_random_studies_pass_the_audit_and_their_cohorts_are_the_oracles(
        anvil: AnvilNode, module_exchange: Exchange, actors: Any, sites: list[Site], deployment_file: Path,
        example_dirs: Iterator[Path], scenario: Scenario) -> None:
    exchange = module_exchange
    chosen = [sites[i] for i in scenario.hospitals]
    with chain_restored(anvil):  # each example starts from the module's chain
        study_id = _study(exchange, actors, chosen, scenario)
        player = Player(exchange, actors.coordinator, chosen, study_id)
        nodes = Hospitals(player, scenario.phases, chosen, scenario.sealed)
        cfg = replace(config(study_id, min_nodes=1, noise=2.0 if scenario.dp else 0.0, clipping=1.0),
                      robustness_patients=4, wait_nodes=5)
        model_dir = next(example_dirs)
        with grid_identity():
            run_study(ScriptedGrid(list(range(1, len(chosen) + 1)), nodes), cfg, exchange,  # type: ignore[arg-type]
                      actors.coordinator, model_dir)
        bundle = bundle_folder(study_folder(model_dir, study_id))
        deployment = audit.read_manifest(deployment_file)
        reader, artifacts = audit.connect(exchange.chain.rpc_url, deployment), audit.read_artifacts()
        # The manifests of hospitals in sealed mode are listed by hash but held by them: the audit names each
        # missing one and cannot pass; given the hospitals' own files (`metai-node cohort-manifest`), it can.
        held = {(r, s.node.address): f"rounds/{r}/cohorts/{s.node.address}.json"
                for (r, h), (_, members) in nodes.cohorts.items() for s, sealed in zip(chosen, scenario.sealed,
                                                                                          strict=True)
                if sealed and s.node.address == h and members}
        first = verify_study(reader, deployment, artifacts, study_id, bundle)
        for (round_, hospital), name in held.items():
            site = next(s for s in chosen if s.node.address == hospital)
            (bundle / name).write_text(str(read_sent_manifest(site.node.dir, study_id, round_)), encoding="utf-8")
        report = verify_study(reader, deployment, artifacts, study_id, bundle)
        times = {block: int(exchange.chain.w3.eth.get_block(block)["timestamp"])
                 for block, _ in nodes.cohorts.values()}
        # The contract's own answer for every registered patient at each cohort block, for a failure's message.
        said = {(r, h): dict(zip((p.address for s in chosen if s.node.address == h for p in s.registered),
                                 exchange.consent.permits_batch(
                                     [p.address for s in chosen if s.node.address == h for p in s.registered],
                                     Use(hospital=h, kinds=Kind.CT_SINOGRAM, purpose=Purpose.HMB, study_id=study_id),
                                     block=b), strict=True))
                for (r, h), (b, _) in nodes.cohorts.items()}
        assert exchange.studies.study(study_id).status == StudyStatus.COMPLETED

    assert {f.where for f in first.findings if f.check == "bundle.file"} == set(held.values()), first.text()
    assert all("hospital in sealed mode holds" in f.message for f in first.findings if f.check == "bundle.file")
    assert {f.check for f in first.findings} <= {"bundle.file", "cohort.manifest"}, first.text()
    assert len([f for f in first.findings if f.check == "cohort.manifest"]) == len(held)
    assert first.ok == (not held)
    if held:
        event("a hospital sealed its manifests")
    assert report.ok, f"false alarm on {scenario}:\n{report.text()}"
    assert report.passed["bundle.anchored"] == 1
    assert report.passed["aggregation.model"] == scenario.rounds
    contributions = 0
    event(f"{len(chosen)} hospitals, {scenario.rounds} rounds, {'with' if scenario.dp else 'without'} DP")
    for (round_, hospital), (block, members) in sorted(nodes.cohorts.items()):
        site = next(s for s in chosen if s.node.address == hospital)
        registered = [p.address for p in site.registered]
        oracle = nodes.oracles[(round_, hospital)]
        expected = oracle.permitted(registered, hospital, study_id, times[block])
        assert members == expected, (
            f"round {round_}, {hospital}, cohort block {block} at time {times[block]}: the node took {members}, "
            f"the oracle {expected}; the contract says {said[(round_, hospital)]}; the oracle's consents of those "
            f"differing: { {k: v for k, v in oracle.slots.items() if k[0] in members ^ expected} }; "
            "played:\n" + "\n".join(player.log))
        if expected != oracle.permitted(registered, hospital, study_id, 0):
            event("an expiry decided a cohort")
        if round_ > 1 and members < nodes.cohorts[(round_ - 1, hospital)][1]:
            event("a cohort lost patients between rounds")
        if not members:
            event("a hospital had no one to train on")
        # The patients whose records the node never registered are never in a cohort, whatever they granted.
        assert not members & {p.address for p in site.unregistered}
        manifest = bundle / f"rounds/{round_}/cohorts/{hospital}.json"
        if expected:
            contributions += 1
            written = json.loads(manifest.read_text())
            assert written["cohort_block"] == block
            assert {m["patient"] for m in written["members"]} == expected
        else:
            assert not manifest.exists()
    assert report.passed["cohort.root"] == contributions
