"""The coordinator's checks of a round's replies with anchoring on, against what a real Anvil chain holds.

Each hospital anchors its contribution with the real ``StudyRegistry.contribute`` call; the reply is
then judged by ``combine_round`` (checks, then aggregation), the unit a round runs without a SuperLink.
"""

from __future__ import annotations

import numpy as np
import pytest

from coordinator.errors import StudyAborted
from coordinator.rounds import combine_round
from tests.coordinator.round_replies import (
    ROOT_A,
    ROOT_B,
    anchor,
    config,
    error_reply,
    reply,
    running_study,
    update_hash,
)

SENT = [np.zeros(3, dtype=np.float32)]
HONEST = [np.array([0.5, -0.25, 1.0], dtype=np.float32)]
OTHER = [np.array([0.5, -0.25, 1.5], dtype=np.float32)]  # one value differs


@pytest.fixture
def study(exchange, actors) -> int:  # type: ignore[no-untyped-def]
    return running_study(exchange, actors.researcher, actors.coordinator, [actors.hospital, actors.hospital2])


def _hex(digest: bytes) -> str:
    return "0x" + digest.hex()


def test_a_reply_matching_its_anchored_contribution_is_accepted_with_the_chain_count(exchange, actors,
                                                                                       study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, HONEST, 3)])
    assert outcome.refused == []
    assert [(c.hospital, c.cohort_count) for c in outcome.accepted] == [(actors.hospital.address, 3)]
    assert outcome.accepted[0].seconds == {"train": 0.25}
    assert outcome.accepted[0].synthetic_count == 0
    np.testing.assert_array_equal(outcome.weights[0], HONEST[0])


def test_weights_matching_their_claim_but_not_the_anchored_hash_are_refused(exchange, actors,
                                                                              study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    anchor(exchange, actors.hospital2, study, 1, HONEST, 5)
    swapped = reply(actors.hospital2.address, OTHER, 5, node_id=2)  # claims OTHER's own hash
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, HONEST, 3), swapped])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [
        f"{actors.hospital2.address}: round 1 of study {study}: update hash {_hex(update_hash(OTHER))} differs from "
        f"the {_hex(update_hash(HONEST))} anchored on chain"
    ]


def test_weights_that_do_not_hash_to_the_anchored_claim_are_refused(exchange, actors,
                                                                      study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    anchor(exchange, actors.hospital2, study, 1, HONEST, 5)
    # The reply claims the anchored hash but carries other weights.
    forged = reply(actors.hospital2.address, OTHER, 5, claimed_hash=update_hash(HONEST), node_id=2)
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, HONEST, 3), forged])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"{actors.hospital2.address}: returned weights do not hash to its claimed update "
                               f"{_hex(update_hash(HONEST))}"]


@pytest.mark.parametrize(("root", "count", "differs"), [
    (ROOT_B, 5, f"cohort root 0x{ROOT_B.hex()} differs from the 0x{ROOT_A.hex()} anchored on chain"),
    (ROOT_A, 6, "cohort count 6 differs from the 5 anchored on chain"),
    (ROOT_B, 4, f"cohort root 0x{ROOT_B.hex()} differs from the 0x{ROOT_A.hex()} anchored on chain; "
                "cohort count 4 differs from the 5 anchored on chain"),
], ids=["root", "count", "both"])
def test_a_cohort_other_than_the_anchored_one_is_refused(exchange, actors, study, root: bytes, count: int,
                                                         differs: str) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    anchor(exchange, actors.hospital2, study, 1, HONEST, 5, root=ROOT_A)
    claimed = reply(actors.hospital2.address, HONEST, count, root=root, node_id=2)
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, HONEST, 3), claimed])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"{actors.hospital2.address}: round 1 of study {study}: {differs}"]


def test_a_reply_without_an_anchored_contribution_is_refused(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    unanchored = reply(actors.hospital2.address, HONEST, 5, node_id=2)
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, HONEST, 3), unanchored])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"{actors.hospital2.address}: no contribution anchored on chain for round 1 of "
                               f"study {study}; a node anchors its update before it replies"]


def test_a_contribution_anchored_for_an_earlier_round_does_not_count_for_the_next(exchange, actors,
                                                                                   study) -> None:  # type: ignore[no-untyped-def]
    for h in (actors.hospital, actors.hospital2):
        anchor(exchange, h, study, 1, HONEST, 3)
    exchange.studies.record_round(actors.coordinator, study, 1, update_hash(HONEST),
                                  [actors.hospital.address, actors.hospital2.address])
    anchor(exchange, actors.hospital, study, 2, OTHER, 3)
    # hospital2 replays its round-1 reply in round 2, where it anchored nothing
    replayed = reply(actors.hospital2.address, HONEST, 3, node_id=2, round_=2)
    outcome = combine_round(exchange, config(study), 2, SENT,
                            [reply(actors.hospital.address, OTHER, 3, round_=2), replayed])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"{actors.hospital2.address}: no contribution anchored on chain for round 2 of "
                               f"study {study}; a node anchors its update before it replies"]


def test_a_contribution_anchored_for_another_study_does_not_count(exchange, actors,
                                                                   study) -> None:  # type: ignore[no-untyped-def]
    other = running_study(exchange, actors.researcher, actors.coordinator, [actors.hospital, actors.hospital2])
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    anchor(exchange, actors.hospital2, other, 1, HONEST, 5)
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, HONEST, 3),
                                                                reply(actors.hospital2.address, HONEST, 5, node_id=2)])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"{actors.hospital2.address}: no contribution anchored on chain for round 1 of "
                               f"study {study}; a node anchors its update before it replies"]


def test_a_second_reply_for_the_same_hospital_is_not_counted_twice(exchange, actors,
                                                                    study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    first = reply(actors.hospital.address, HONEST, 3, node_id=1)
    again = reply(actors.hospital.address.lower(), HONEST, 3, node_id=2)  # same address, other spelling
    outcome = combine_round(exchange, config(study), 1, SENT, [first, again])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"{actors.hospital.address}: a second reply for round 1; a hospital's update is "
                               "counted once"]


def test_error_and_malformed_replies_are_refused_with_their_reason(exchange, actors,
                                                                   study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    no_address = reply("MARK-0007-ZQX", HONEST, 3, node_id=3)
    outcome = combine_round(exchange, config(study), 1, SENT, [
        reply(actors.hospital.address, HONEST, 3), error_reply("no consenting records", node_id=9), no_address])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused[0] == "node 9: no consenting records"
    assert outcome.refused[1].startswith("'MARK-0007-ZQX': not a hospital address")


def test_a_round_with_too_few_accepted_replies_aborts_the_study(exchange, actors,
                                                                study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    anchor(exchange, actors.hospital2, study, 1, HONEST, 5)
    replies = [reply(actors.hospital.address, HONEST, 3), reply(actors.hospital2.address, OTHER, 5, node_id=2)]
    with pytest.raises(StudyAborted, match=r"round 1: 1 of 2 required nodes contributed; refusals: \[.*update hash "
                                           + _hex(update_hash(OTHER))):
        combine_round(exchange, config(study, min_nodes=2), 1, SENT, replies)


@pytest.mark.parametrize("returned", [
    [np.zeros(4, dtype=np.float32)],
    [np.zeros(3, dtype=np.float64)],
    [np.zeros(3, dtype=np.float32), np.zeros(1, dtype=np.float32)],
], ids=["shape", "dtype", "extra-layer"])
def test_an_anchored_model_of_another_shape_is_refused_not_aggregated(exchange, actors, study,
                                                                      returned: list[np.ndarray]) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, HONEST, 3)
    anchor(exchange, actors.hospital2, study, 1, returned, 5)  # its hash is on chain, so only the shape can refuse it
    replies = [reply(actors.hospital.address, HONEST, 3), reply(actors.hospital2.address, returned, 5, node_id=2)]
    outcome = combine_round(exchange, config(study), 1, SENT, replies)
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    (refusal,) = outcome.refused
    assert refusal.startswith(f"{actors.hospital2.address}: returned weights do not fit the model sent "
                              "[((3,), 'float32')] (the weights record holds "), refusal
    assert refusal.endswith("; a node returns the model it was sent, trained"), refusal
