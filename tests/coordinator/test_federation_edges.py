"""The coordinator's round checks where a real chain and a bad day differ from the usual path:
contributions mined in one block, an RPC endpoint that serves no logs, DP with a noise multiplier
under 1, the time the checks take, and FedAvg given counts that do not match the updates."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from flwr.app import ArrayRecord

import contracts.studies as studies_client
from coordinator.aggregation import fedavg
from coordinator.errors import StudyAborted
from coordinator.rounds import combine_round
from tasks.protocol import pack_weights
from tests.coordinator.round_replies import ROOT_A, ROOT_B, anchor, config, reply, running_study

SENT = [np.zeros(3, dtype=np.float32)]
A = [np.array([0.5, -0.25, 1.0], dtype=np.float32)]
B = [np.array([1.5, 0.75, -1.0], dtype=np.float32)]


@pytest.fixture
def study(exchange, actors) -> int:  # type: ignore[no-untyped-def]
    return running_study(exchange, actors.researcher, actors.coordinator, [actors.hospital, actors.hospital2])


def test_contributions_mined_in_the_same_block_are_each_matched_to_their_own_event(exchange, actors,
                                                                                   study) -> None:  # type: ignore[no-untyped-def]
    rpc = exchange.chain.w3.provider
    rpc.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        senders = [threading.Thread(target=anchor, args=(exchange, account, study, 1, weights, count, root))
                   for account, weights, count, root in ((actors.hospital, A, 3, ROOT_A),
                                                        (actors.hospital2, B, 5, ROOT_B))]
        for sender in senders:
            sender.start()
        deadline = time.monotonic() + 30
        while int(rpc.make_request("txpool_status", [])["result"]["pending"], 16) < 2:  # type: ignore[arg-type]
            assert time.monotonic() < deadline, "the two contributions never reached the pool"
            time.sleep(0.05)
        rpc.make_request("evm_mine", [])  # type: ignore[arg-type]
        for sender in senders:
            sender.join(timeout=60)
    finally:
        rpc.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    blocks = {exchange.studies.contribution_of(study, 1, account.address).block_number
              for account in (actors.hospital, actors.hospital2)}
    assert len(blocks) == 1, "both contributions must be in one block for this test to mean anything"
    outcome = combine_round(exchange, config(study, min_nodes=2), 1, SENT,
                            [reply(actors.hospital.address, A, 3, root=ROOT_A, node_id=1),
                             reply(actors.hospital2.address, B, 5, root=ROOT_B, node_id=2)])
    assert outcome.refused == []
    assert [(c.hospital, c.cohort_count) for c in outcome.accepted] == [(actors.hospital.address, 3),
                                                                       (actors.hospital2.address, 5)]


def test_an_endpoint_that_serves_no_logs_for_the_block_gets_the_reply_refused_with_why(
        exchange, actors, study, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    root = exchange.studies.cohort_root_of(study, 1, actors.hospital.address)
    monkeypatch.setattr(studies_client, "read_events", lambda *args, **kwargs: [])  # a pruned or lagging node
    with pytest.raises(StudyAborted) as aborted:
        combine_round(exchange, config(study, min_nodes=1), 1, SENT, [reply(actors.hospital.address, A, 3)])
    assert str(aborted.value) == "round 1: 0 of 1 required nodes contributed; refusals: " + repr([
        f"{actors.hospital.address}: study {study} round 1: hospital {actors.hospital.address} has cohort root "
        f"0x{root.hex()} on chain but the endpoint returned 0 matching ContributionRecorded events (expected "
        "exactly one); is it serving old logs?"])


def test_a_reply_naming_no_address_is_refused_with_what_was_expected(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    outcome = combine_round(exchange, config(study, min_nodes=1), 1, SENT,
                            [reply("St Elsewhere", A, 3), reply(actors.hospital.address, A, 3)])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == ["'St Elsewhere': not a hospital address (0x and 40 hex digits); the reply names no "
                               "hospital whose contribution could be read"]


def test_a_round_where_nothing_passes_aborts_even_with_min_nodes_zero(exchange, study) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(StudyAborted, match=r"round 1: 0 of 0 required nodes contributed; refusals: \["):
        combine_round(exchange, config(study, min_nodes=0), 1, SENT, [reply("St Elsewhere", A, 3)])


def test_the_time_the_checks_took_is_reported(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    started = time.monotonic()
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, A, 3)])
    elapsed = time.monotonic() - started
    assert 0 < outcome.check_seconds <= elapsed


def test_a_noise_multiplier_under_one_still_takes_the_private_path(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    near = [np.array([0.1, 0.0, 0.0], dtype=np.float32)]
    far = [np.array([0.0, 0.2, 0.0], dtype=np.float32)]
    anchor(exchange, actors.hospital, study, 1, near, 1)
    anchor(exchange, actors.hospital2, study, 1, far, 9)
    outcome = combine_round(exchange, config(study, min_nodes=2, noise=0.5, clipping=1.0), 1, SENT,
                            [reply(actors.hospital.address, near, 1, node_id=1),
                             reply(actors.hospital2.address, far, 9, node_id=2)], rng=np.random.default_rng(5))
    # equal weights (not 1:9) plus noise of std 0.5 * 1.0 / 2 from the generator given
    expected = np.array([0.05, 0.1, 0.0]) + np.random.default_rng(5).normal(0.0, 0.25, 3)
    np.testing.assert_allclose(outcome.weights[0], expected, rtol=1e-6, atol=1e-7)


def test_fedavg_weights_by_count_and_refuses_counts_that_do_not_match_the_updates() -> None:
    updates = [[np.array([1.0, 2.0]), np.array([[0.0]])], [np.array([3.0, 6.0]), np.array([[4.0]])]]
    got = fedavg(updates, [1, 3])
    np.testing.assert_allclose(got[0], [2.5, 5.0])
    np.testing.assert_allclose(got[1], [[3.0]])
    with pytest.raises(ValueError, match="zip"):
        fedavg(updates, [1, 3, 5])
    with pytest.raises(ValueError, match="zip"):
        fedavg(updates, [1])


def test_a_model_of_more_than_ten_arrays_is_read_in_its_order(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    # Keys "0".."11": sorted as text, "10" and "11" would come before "2" and the hash would not match.
    sent = [np.zeros(i + 1, dtype=np.float32) for i in range(12)]
    mine = [np.full(i + 1, i, dtype=np.float32) for i in range(12)]
    anchor(exchange, actors.hospital, study, 1, mine, 4)
    outcome = combine_round(exchange, config(study), 1, sent, [reply(actors.hospital.address, mine, 4)])
    assert outcome.refused == []
    assert [w.tolist() for w in outcome.weights] == [[float(i)] * (i + 1) for i in range(12)]


def test_weights_packed_in_another_order_than_the_anchored_update_are_refused(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    # The reply's one array is read in the layout of the model sent; the same numbers packed in
    # another order of the weights are not the update the node anchored.
    sent = [np.zeros(i + 1, dtype=np.float32) for i in range(12)]
    mine = [np.full(i + 1, i, dtype=np.float32) for i in range(12)]
    anchor(exchange, actors.hospital, study, 1, mine, 4)
    message = reply(actors.hospital.address, mine, 4)
    shuffled = [mine[i] for i in (7, 11, 0, 10, 3, 1, 9, 2, 5, 8, 4, 6)]
    message.content.array_records["arrays"] = ArrayRecord(pack_weights(shuffled))
    with pytest.raises(StudyAborted, match="returned weights do not hash to its claimed update"):
        combine_round(exchange, config(study), 1, sent, [message])


@pytest.mark.parametrize("arrays", [
    pytest.param(lambda mine: [np.concatenate([w.ravel() for w in mine])[:-1]], id="one number short"),
    pytest.param(lambda mine: mine, id="the weights unpacked, an array each"),
    pytest.param(lambda mine: [np.concatenate([w.ravel() for w in mine]).astype(np.float64)], id="float64"),
])
def test_a_reply_whose_weights_do_not_fit_the_layout_sent_is_refused(exchange, actors, study, arrays) -> None:  # type: ignore[no-untyped-def]
    sent = [np.zeros(i + 1, dtype=np.float32) for i in range(12)]
    mine = [np.full(i + 1, i, dtype=np.float32) for i in range(12)]
    anchor(exchange, actors.hospital, study, 1, mine, 4)
    message = reply(actors.hospital.address, mine, 4)
    message.content.array_records["arrays"] = ArrayRecord(arrays(mine))
    with pytest.raises(StudyAborted, match=r"returned weights do not fit the model sent .*weights record holds"):
        combine_round(exchange, config(study), 1, sent, [message])


def test_a_reply_without_a_commitment_is_refused_saying_what_a_node_sends(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    incomplete = reply(actors.hospital.address, A, 3, node_id=7)
    del incomplete.content.config_records["commitment"]
    outcome = combine_round(exchange, config(study, min_nodes=1), 1, SENT,
                            [incomplete, reply(actors.hospital.address, A, 3)])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == ["node 7: malformed reply (KeyError('commitment')); expected the arrays, metrics and "
                               "commitment (hospital, cohort-root, cohort-count, update-hash) a node sends"]


@pytest.mark.parametrize(("key", "value", "why"), [
    ("update-hash", None, "ProtocolError(\"the commitment lacks 'update-hash'\")"),
    ("cohort-count", "3", "ProtocolError(\"'cohort-count' is '3'; expected a number\")"),
    ("hospital", None, "ProtocolError(\"the record lacks 'hospital'\")"),
])
def test_a_commitment_missing_a_key_or_of_another_type_is_refused_naming_it(exchange, actors, study, key: str,
                                                                           value: object, why: str) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, A, 3)
    bad = reply(actors.hospital.address, A, 3, node_id=7)
    commitment = bad.content.config_records["commitment"]
    if value is None:
        del commitment[key]
    else:
        commitment[key] = value
    outcome = combine_round(exchange, config(study, min_nodes=1), 1, SENT, [bad, reply(actors.hospital.address, A, 3)])
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"node 7: malformed reply ({why}); expected the arrays, metrics and commitment "
                               "(hospital, cohort-root, cohort-count, update-hash) a node sends"]


def test_the_update_hash_is_read_from_the_study_s_blocks_with_every_topic_filtered(  # type: ignore[no-untyped-def]
        exchange, actors, study, monkeypatch: pytest.MonkeyPatch) -> None:
    # On a long-lived chain a range from block 0, or an unfiltered one, makes every check scan the whole chain.
    provider = exchange.chain.w3.provider
    provider.make_request("evm_mine", [])  # type: ignore[arg-type]  # blocks before and after the contribution
    anchor(exchange, actors.hospital, study, 1, A, 3)
    provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    started = exchange.studies.study(study).started_at_block
    asked: list[tuple[int, int | None, int]] = []
    read = studies_client.read_events

    def recording(chain, addresses, *, from_block=0, to_block=None, topics=None):  # type: ignore[no-untyped-def]
        asked.append((from_block, to_block, len(topics or [])))
        return read(chain, addresses, from_block=from_block, to_block=to_block, topics=topics)

    monkeypatch.setattr(studies_client, "read_events", recording)
    outcome = combine_round(exchange, config(study), 1, SENT, [reply(actors.hospital.address, A, 3)])
    assert outcome.refused == []
    assert asked == [(started, None, 4)]  # from the study's start; event, study, round and hospital filtered


def test_without_anchoring_the_replies_are_averaged_as_they_claim(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    # Anchoring off (a dry run without a chain): nothing on chain to compare, so the claims are used.
    outcome = combine_round(exchange, config(study, min_nodes=2, anchor=False), 1, SENT,
                            [reply(actors.hospital.address, A, 3, node_id=1),
                             reply(actors.hospital2.address, B, 5, node_id=2)])
    assert outcome.refused == []
    assert [(c.hospital, c.cohort_count, c.synthetic_count) for c in outcome.accepted] == [
        (actors.hospital.address, 3, 0), (actors.hospital2.address, 5, 0)]
    np.testing.assert_allclose(outcome.weights[0], (3 * A[0] + 5 * B[0]) / 8, rtol=1e-6)
    np.testing.assert_array_equal(outcome.accepted[0].weights[0], A[0])


def test_an_update_exactly_at_the_clipping_tolerance_is_accepted_and_one_step_over_is_refused(
        exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    # The coordinator allows 1e-4 of relative slack over the clipping norm C for the nodes' float32
    # arithmetic: C * 1.0001 is exactly 0.5 for this C, and the update [0.5] has norm exactly 0.5.
    clipping = 0.5 / 1.0001
    assert clipping * (1 + 1e-4) == 0.5
    at_limit = [np.array([0.5, 0.0, 0.0], dtype=np.float32)]
    over = [np.array([0.0, np.nextafter(np.float32(0.5), np.float32(1)), 0.0], dtype=np.float32)]
    anchor(exchange, actors.hospital, study, 1, at_limit, 2)
    anchor(exchange, actors.hospital2, study, 1, over, 2)
    outcome = combine_round(exchange, config(study, min_nodes=1, noise=1.0, clipping=clipping), 1, SENT,
                            [reply(actors.hospital.address, at_limit, 2, node_id=1),
                             reply(actors.hospital2.address, over, 2, node_id=2)], rng=np.random.default_rng(0))
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address]
    assert outcome.refused == [f"{actors.hospital2.address}: update norm 0.5 exceeds the clipping norm {clipping:g} "
                               "by more than the 0.0001 allowed for float32 arithmetic: the node did not clip"]
    assert outcome.clip_factors == [clipping / 0.5]  # taken at the limit, then scaled back onto the norm
