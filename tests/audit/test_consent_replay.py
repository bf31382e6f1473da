"""The auditor's consent replay answers as ``ConsentRegistry`` did, at every block of a scenario.

A scripted scenario walks through each rule once (direct and relayed grants, a batch relay with a
refused item, revocations, re-grants over a revoked and over a live consent, expiries crossed by
moving the clock and at their exact second, every scope broadening); a randomized one plays
sequences drawn by hypothesis. For every block and every (patient, use) of a grid, the replay's
answer is compared with ``permitsBatch`` and ``explain`` run by ``eth_call`` at that block.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import audit
from contracts.datause import ANY_HOSPITAL, Kind, Purpose, Scope
from contracts.exchange import Exchange
from deploy.anvil import AnvilNode
from tests.audit.consent_script import (
    ExpiryEdge,
    Grant,
    Player,
    RelayBatch,
    Revoke,
    Step,
    Wait,
    compare_explanations,
    compare_permits,
    use_grid,
)
from tests.conftest import chain_restored

D7 = 7  # a disease code
SPECIFIC = Scope(hospital="H1", purpose=Purpose.HMB, study_id=1)  # one hospital, one study
ANYWHERE = Scope(purpose=Purpose.GRU)  # any hospital, any study, the broadest purpose
DS_H2 = Scope(hospital="H2", purpose=Purpose.DS, disease=D7)  # one hospital, any study
HMB_H1 = Scope(hospital="H1", purpose=Purpose.HMB)
DS_STUDY2 = Scope(purpose=Purpose.DS, disease=D7, study_id=2)  # any hospital, one study
DS_H1_STUDY1 = Scope(hospital="H1", purpose=Purpose.DS, disease=D7, study_id=1)
IMAGE_CT = Kind.IMAGE | Kind.CT_SINOGRAM

#: Patient 6 grants nothing; the others each get a story.
SCRIPT: tuple[Step, ...] = (
    Grant(0, SPECIFIC, IMAGE_CT, lifetime=10_000),
    Grant(1, ANYWHERE, Kind.IMAGE | Kind.CT_SINOGRAM | Kind.MR_KSPACE | Kind.DERIVED),
    Grant(2, DS_H2, Kind.CT_SINOGRAM, lifetime=300, relayed=True),
    RelayBatch((Grant(3, HMB_H1, Kind.IMAGE), Grant(4, DS_STUDY2, Kind.CT_SINOGRAM | Kind.MR_KSPACE, lifetime=5_000),
                Grant(2, HMB_H1, Kind.IMAGE)), late=frozenset({2})),
    Revoke(0, SPECIFIC),
    Grant(5, DS_H1_STUDY1, Kind.IMAGE, lifetime=2_000),
    Wait(400),  # patient 2's DS consent lapses
    Grant(0, SPECIFIC, Kind.IMAGE, lifetime=20_000),  # re-granted after the revocation, fewer kinds
    Revoke(3, HMB_H1, relayed=True),
    Grant(1, ANYWHERE, Kind.IMAGE),  # overwrites a consent in force: fewer kinds
    ExpiryEdge(5, DS_H1_STUDY1),  # in force one second before its expiry, lapsed at it
    Grant(3, HMB_H1, Kind.CT_SINOGRAM, relayed=True),  # re-granted by signature after a relayed revocation
    Grant(2, Scope(hospital="H2", purpose=Purpose.HMB, study_id=2), Kind.IMAGE, lifetime=50),
    Grant(4, DS_H2, Kind.IMAGE),  # beside DS_STUDY2: for (H2, study 2) the named hospital comes first
    Revoke(4, DS_STUDY2),
    Grant(5, Scope(purpose=Purpose.HMB, study_id=1), IMAGE_CT, lifetime=100_000),  # any hospital, study 1
    Wait(60),
    Revoke(1, ANYWHERE, relayed=True),
    Wait(5_000),  # patient 0's first consent would have lapsed: its re-grant moved the expiry
)

#: Each hospital (and none), each study (and none), a purpose at each level plus another disease.
GRID: dict[str, list[Any]] = dict(studies=[1, 2, 0], kinds=[Kind.IMAGE, Kind.CT_SINOGRAM, IMAGE_CT, Kind.MR_KSPACE],
            purposes=[(Purpose.GRU, 0), (Purpose.HMB, 0), (Purpose.DS, D7), (Purpose.DS, 8)])


@dataclass(frozen=True)
class Played:
    """A scenario played on the chain and the auditor's replay of it."""

    history: audit.ConsentHistory
    registry: str
    patients: list[str]
    uses: list[audit.Use]
    blocks: range  # from the registry's deployment to the last block of the scenario
    refused: list[str]


def play(steps: tuple[Step, ...], exchange: Exchange, actors: Any, anvil: AnvilNode, reader: audit.ChainReader,
         manifest: Path, patients: int, grid: dict[str, list[Any]]) -> Played:
    """Play ``steps``, then read the chain as the auditor does."""
    player = Player(exchange, actors, anvil.rpc_url)
    for step in steps:
        player.play(step)
    deployment = audit.read_manifest(manifest)
    history = audit.read_consent_history(reader, deployment, audit.read_artifacts())
    registry = deployment.contract("ConsentRegistry")
    hospitals = [player.hospitals[h] for h in ("H1", "H2", "H3")] + [ANY_HOSPITAL]
    return Played(history, registry.address, [p.address for p in actors.patients[:patients]],
                  use_grid(hospitals, **grid), range(registry.block, history.to_block + 1), player.refused)


@pytest.fixture(scope="module")
def scripted(module_exchange: Exchange, actors: Any, anvil: AnvilNode, reader: audit.ChainReader,
             manifest: Path) -> Played:
    return play(SCRIPT, module_exchange, actors, anvil, reader, manifest, patients=7, grid=GRID)


def test_the_scripted_scenario_played_as_written(scripted: Played) -> None:
    """The batch's late item was refused and nothing else: every step changed the chain."""
    assert scripted.refused == ["ConsentRegistryExpiredSignature"]
    assert len(scripted.blocks) > len(SCRIPT)


def test_replay_permits_as_the_chain_did_at_every_block(scripted: Played, reader: audit.ChainReader) -> None:
    """For every block and every (patient, use) of the grid, the replay gives permitsBatch's answer,
    and the grid meets every reason at least once."""
    reasons = compare_permits(reader, scripted.history, scripted.registry, scripted.patients, scripted.uses,
                              scripted.blocks)
    assert set(reasons) == set(audit.Reason), reasons


def test_replay_explains_as_the_chain_did_at_every_block(scripted: Played, reader: audit.ChainReader) -> None:
    """The reason, consent id and its value (revocation block, expiry, kinds) are explain's."""
    wrong = compare_explanations(reader, scripted.history, scripted.registry, scripted.patients, scripted.uses,
                                 scripted.blocks)
    assert wrong == [], f"{len(wrong)} explanations differ, e.g.\n" + "\n".join(wrong[:10])


def test_an_expiry_lapses_at_its_exact_second(scripted: Played, reader: audit.ChainReader) -> None:
    """At the block whose time is the expiry the consent no longer permits; one second earlier it did."""
    patient = scripted.patients[5]
    use = audit.Use(scripted.uses[0].hospital, Kind.IMAGE, Purpose.DS, D7, 1)  # H1, DS 7, study 1
    instants = [reader.instant(b) for b in scripted.blocks]
    lapsed = [i for i in instants if scripted.history.explain(patient, use, i).reason is audit.Reason.EXPIRED]
    before = next(i for i in instants if i.block == lapsed[0].block - 1)
    assert scripted.history.explain(patient, use, before).permitted
    consent = scripted.history.explain(patient, use, lapsed[0]).consent
    assert consent is not None
    assert (before.timestamp, lapsed[0].timestamp) == (consent.expires_at - 1, consent.expires_at)


# ---------------------------------------------------------------- randomized scenarios

_PATIENTS = 3
_scopes = st.builds(
    Scope,
    hospital=st.sampled_from(["H1", ANY_HOSPITAL]),
    purpose=st.sampled_from([Purpose.GRU, Purpose.HMB]),
    study_id=st.sampled_from([1, 0]),
) | st.builds(Scope, hospital=st.sampled_from(["H1", ANY_HOSPITAL]), purpose=st.just(Purpose.DS),
              disease=st.just(D7), study_id=st.sampled_from([1, 0]))
_kinds = st.sampled_from([Kind.IMAGE, Kind.CT_SINOGRAM, IMAGE_CT])
_grants = st.builds(Grant, patient=st.integers(0, _PATIENTS - 1), scope=_scopes, kinds=_kinds,
                    lifetime=st.sampled_from([None, 30, 120]), relayed=st.booleans())
_steps = st.lists(
    st.one_of(
        _grants,
        _grants,  # twice as likely: revocations and waits need something granted
        st.builds(RelayBatch, grants=st.lists(_grants, min_size=1, max_size=3).map(tuple)),
        st.builds(Revoke, patient=st.integers(0, _PATIENTS - 1), scope=_scopes, relayed=st.booleans()),
        st.builds(Wait, seconds=st.sampled_from([10, 60, 150])),
        st.builds(ExpiryEdge, patient=st.integers(0, _PATIENTS - 1), scope=_scopes),
    ),
    min_size=3,
    max_size=9,
).map(tuple)
#: Named hospital and any, named study and any, each purpose level, kinds alone and together.
_SMALL_GRID: dict[str, list[Any]] = dict(studies=[1, 0], kinds=[Kind.IMAGE, IMAGE_CT],
                   purposes=[(Purpose.GRU, 0), (Purpose.HMB, 0), (Purpose.DS, D7)])


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=_steps)
def test_replay_of_random_scenarios_permits_and_explains_as_the_chain_did(
        exchange: Exchange, actors: Any, anvil: AnvilNode, reader: audit.ChainReader, manifest: Path,
        steps: tuple[Step, ...]) -> None:
    """Random grants (direct, relayed, in batches), revocations, waits and blocks at an expiry's edge: the
    replay gives permitsBatch's answer and explain's reason at every block since the scenario began."""
    with chain_restored(anvil):  # each example starts from the same chain
        start = exchange.chain.block_number
        played = play(steps, exchange, actors, anvil, reader, manifest, patients=_PATIENTS, grid=_SMALL_GRID)
        blocks = range(start, played.history.to_block + 1)
        reasons = compare_permits(reader, played.history, played.registry, played.patients, played.uses, blocks)
        wrong = compare_explanations(reader, played.history, played.registry, played.patients, played.uses, blocks)
    assert wrong == [], f"{len(wrong)} explanations differ, e.g.\n" + "\n".join(wrong[:10])
    assert reasons  # every (block, patient, use) of the scenario was answered, each with a reason
