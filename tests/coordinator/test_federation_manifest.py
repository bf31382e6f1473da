"""A reply's cohort manifest: kept as sent when it names the contribution, the reply refused when it
names another study, round, hospital, root or cohort size, or is no manifest at all."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from coordinator.rounds import combine_round
from tests.coordinator.round_replies import ROOT_A, ROOT_B, anchor, config, manifest, reply, running_study

SENT = [np.zeros(3, dtype=np.float32)]
A = [np.array([0.5, -0.25, 1.0], dtype=np.float32)]


@pytest.fixture
def study(exchange, actors) -> int:  # type: ignore[no-untyped-def]
    return running_study(exchange, actors.researcher, actors.coordinator, [actors.hospital, actors.hospital2])


def test_a_manifest_naming_the_contribution_is_kept_as_sent(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    text = manifest(study, 1, actors.hospital.address.lower(), ROOT_A, 3)  # addresses compare in any case
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, A, 3, manifest=text)])
    assert outcome.refused == []
    assert outcome.accepted[0].manifest == text


@pytest.mark.parametrize(("change", "why"), [
    ({"round": 2}, "round 2 (expected 1)"),
    ({"cohort_root": "0x" + ROOT_B.hex()}, f"cohort_root '0x{ROOT_B.hex()}' (expected '0x{ROOT_A.hex()}')"),
    ({"members": []}, "members 0 (expected 3)"),
    ({"format": "metai-cohort/2"}, "the cohort manifest has format 'metai-cohort/2', expected 'metai-cohort/1'"),
])
def test_a_manifest_describing_something_else_gets_the_reply_refused_naming_it(
        exchange, actors, study, change: dict[str, object], why: str) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    data = json.loads(manifest(study, 1, actors.hospital.address, ROOT_A, 3)) | change
    outcome = combine_round(exchange, config(study, min_nodes=0), 1, SENT,
                            [reply(actors.hospital.address, A, 3, manifest=json.dumps(data)),
                             reply(actors.hospital.address, A, 3, node_id=2)])
    assert [c.manifest for c in outcome.accepted] == [None]  # the reply without a manifest is the one kept
    (refusal,) = outcome.refused
    assert refusal.startswith(f"{actors.hospital.address}: ")
    assert why in refusal


def test_a_manifest_that_is_not_json_gets_the_reply_refused(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    outcome = combine_round(exchange, config(study, min_nodes=0), 1, SENT,
                            [reply(actors.hospital.address, A, 3, manifest="{members: 3"),
                             reply(actors.hospital.address, A, 3, node_id=2)])
    assert outcome.refused == [f"{actors.hospital.address}: the cohort manifest is not JSON (Expecting property name "
                               "enclosed in double quotes: line 1 column 2 (char 1))"]


def test_a_sealed_manifest_s_hash_is_kept_in_its_place(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    digest = hashlib.sha256(manifest(study, 1, actors.hospital.address, ROOT_A, 3).encode()).hexdigest()
    outcome = combine_round(exchange, config(study), 1, SENT,
                            [reply(actors.hospital.address, A, 3, manifest_sha256=digest)])
    assert outcome.refused == []
    assert (outcome.accepted[0].manifest, outcome.accepted[0].manifest_sha256) == (None, digest)


@pytest.mark.parametrize(("sent", "why"), [
    ({"manifest_sha256": "AB" * 32}, "is not 64 lowercase hex digits"),
    ({"manifest_sha256": "0x" + "ab" * 32}, "is not 64 lowercase hex digits"),
    ({"manifest_sha256": "ab" * 31}, "is not 64 lowercase hex digits"),
    ({"manifest_sha256": "ab" * 32, "manifest": "{}"}, "both a cohort manifest and a sealed manifest's hash"),
])
def test_a_malformed_sealed_manifest_hash_gets_the_reply_refused(exchange, actors, study, sent: dict[str, str],
                                                                 why: str) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    outcome = combine_round(exchange, config(study, min_nodes=0), 1, SENT,
                            [reply(actors.hospital.address, A, 3, **sent),  # type: ignore[arg-type]
                             reply(actors.hospital.address, A, 3, node_id=2)])
    assert [(c.manifest, c.manifest_sha256) for c in outcome.accepted] == [(None, None)]  # the plain reply
    (refusal,) = outcome.refused
    assert refusal.startswith(f"{actors.hospital.address}: ")
    assert why in refusal
