"""The coordinator's aggregate of a round equals the one computed here from known arrays and cohort sizes.

Replies are checked against contributions anchored on a real Anvil chain (anchoring on), so the
cohort sizes that weight FedAvg are the ones the chain holds. Expected values are written out or
recomputed in the test, never taken from coordinator/federation.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import MessageType

from coordinator.errors import StudyAborted
from coordinator.federation import _train_message
from coordinator.rounds import combine_round
from tasks.protocol import unpack_weights
from tests.coordinator.round_replies import anchor, config, reply, running_study

# Two layers, so a mix-up between layers shows.
SENT = [np.zeros(2, dtype=np.float32), np.zeros((1, 2), dtype=np.float32)]
MODEL_A = [np.array([1.0, 2.0], dtype=np.float32), np.array([[0.0, 4.0]], dtype=np.float32)]
MODEL_B = [np.array([5.0, 6.0], dtype=np.float32), np.array([[8.0, 0.0]], dtype=np.float32)]


@pytest.fixture
def study(exchange, actors) -> int:  # type: ignore[no-untyped-def]
    return running_study(exchange, actors.researcher, actors.coordinator,
                         [actors.hospital, actors.hospital2, actors.outsider_hospital], privacy_budget=0)


@pytest.mark.parametrize("mu", [0.0, 0.5], ids=["fedavg", "fedprox"])
def test_the_aggregate_is_the_mean_weighted_by_the_anchored_cohort_sizes(exchange, actors, study,
                                                                          mu: float) -> None:  # type: ignore[no-untyped-def]
    anchor(exchange, actors.hospital, study, 1, MODEL_A, 1)
    anchor(exchange, actors.hospital2, study, 1, MODEL_B, 3)
    replies = [reply(actors.hospital.address, MODEL_A, 1, node_id=1),
               reply(actors.hospital2.address, MODEL_B, 3, node_id=2)]
    outcome = combine_round(exchange, config(study, min_nodes=2, mu=mu), 1, SENT, replies)
    # (1 * A + 3 * B) / 4; the unweighted mean would be [3, 4] and [[4, 2]]
    np.testing.assert_allclose(outcome.weights[0], [4.0, 5.0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(outcome.weights[1], [[6.0, 1.0]], rtol=0, atol=1e-6)
    assert [w.dtype for w in outcome.weights] == [np.float32, np.float32]
    assert [c.cohort_count for c in outcome.accepted] == [1, 3]


def test_the_round_sent_carries_the_proximal_term_and_clipping_norm_it_was_told(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_run_id", "_node_id", "_task_id"):  # what the ServerApp runtime sets before run_study
        monkeypatch.setattr(TaskIdentity, name, 1)
    message = _train_message(config(5, mu=0.25), 2, SENT, node_id=7)
    assert (message.metadata.message_type, message.metadata.dst_node_id, message.metadata.group_id) == \
        (MessageType.TRAIN, 7, "2")
    arrays = message.content.array_records["arrays"]
    assert list(arrays.keys()) == ["0"]  # the model travels packed into one array, shaped by the layout
    assert arrays["0"].numpy().tolist() == [0.0, 0.0, 0.0, 0.0]
    layout = message.content.config_records["config"]["weight-layout"]
    assert layout == [1, 2, 2, 1, 2]
    assert [w.tolist() for w in unpack_weights(arrays.to_numpy_ndarrays(), layout)] == [[0.0, 0.0], [[0.0, 0.0]]]
    prox = message.content.config_records["config"]
    assert (prox["study-id"], prox["round"], prox["proximal-mu"]) == (5, 2, 0.25)
    assert "clipping_norm" not in prox  # no DP: nodes must not clip
    private = _train_message(config(5, noise=1.5, clipping=0.75), 2, SENT, node_id=7).content.config_records["config"]
    assert private["clipping_norm"] == 0.75


# DP: updates of L2 norm 0.5 and 0.8 are within C = 1, one of norm 1.5 is not.
DP_SENT = [np.array([0.1, -0.2, 0.3], dtype=np.float32), np.array([[1.0], [2.0]], dtype=np.float32)]
DELTAS = {
    "a": [np.array([0.3, 0.0, 0.0]), np.array([[0.0], [0.4]])],   # norm 0.5
    "b": [np.array([0.0, 0.0, 0.0]), np.array([[0.8], [0.0]])],   # norm 0.8
    "c": [np.array([0.9, 0.0, 0.0]), np.array([[0.0], [1.2]])],   # norm 1.5
}
Z, C, SEED = 2.0, 1.0, 20261130


def _model(delta: list[np.ndarray]) -> list[np.ndarray]:
    return [(s.astype(np.float64) + d).astype(np.float32) for s, d in zip(DP_SENT, delta, strict=True)]


def _dp_round(exchange, actors, study: int, rng: np.random.Generator | None):  # type: ignore[no-untyped-def]
    accounts = {"a": actors.hospital, "b": actors.hospital2, "c": actors.outsider_hospital}
    replies = []
    for node_id, (name, account) in enumerate(accounts.items(), start=1):
        anchor(exchange, account, study, 1, _model(DELTAS[name]), 2 * node_id)
        replies.append(reply(account.address, _model(DELTAS[name]), 2 * node_id, node_id=node_id))
    return combine_round(exchange, config(study, min_nodes=2, noise=Z, clipping=C), 1, DP_SENT, replies, rng=rng)


def test_the_private_aggregate_is_the_mean_of_accepted_updates_plus_noise_of_std_zc_over_m(
        exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    outcome = _dp_round(exchange, actors, study, np.random.default_rng(SEED))
    assert [c.hospital for c in outcome.accepted] == [actors.hospital.address, actors.hospital2.address]
    assert outcome.refused == [f"{actors.outsider_hospital.address}: update norm 1.5 exceeds the clipping norm 1"
                               " by more than the 0.0001 allowed for float32 arithmetic: the node did not clip"]
    # Recomputed here: the two accepted updates, equal weights (not cohort sizes 2 and 4), and
    # noise of std z * C / m with m = 2 accepted (not the 3 replies), drawn layer by layer.
    noise = np.random.default_rng(SEED)
    std = Z * C / 2
    for layer, sent in enumerate(DP_SENT):
        accepted = [_model(DELTAS[n])[layer].astype(np.float64) - sent for n in ("a", "b")]
        expected = sent + (accepted[0] + accepted[1]) / 2 + noise.normal(0.0, std, sent.shape)
        np.testing.assert_allclose(outcome.weights[layer], expected, rtol=1e-6, atol=1e-6)
        assert outcome.weights[layer].dtype == np.float32


def test_without_a_generator_the_noise_is_fresh_each_round(exchange, actors, study) -> None:  # type: ignore[no-untyped-def]
    first = _dp_round(exchange, actors, study, None)
    # The same replies judged again (the chain still holds round 1) must get other noise.
    accounts = (actors.hospital, actors.hospital2)
    again = combine_round(exchange, config(study, min_nodes=2, noise=Z, clipping=C), 1, DP_SENT,
                          [reply(a.address, _model(DELTAS[n]), 2 * i, node_id=i)
                           for i, (n, a) in enumerate(zip("ab", accounts, strict=True), start=1)])
    assert not np.array_equal(first.weights[0], again.weights[0])
    # Both are the same mean plus noise: far from each other only by noise of std z * C / 2 = 1.
    assert np.abs(first.weights[0] - again.weights[0]).max() < 20


@pytest.mark.parametrize(("clipping", "kept"), [(0.8, "ab"), (0.5, "a"), (0.499, "")])
def test_updates_are_kept_up_to_the_clipping_norm_and_refused_beyond(exchange, actors, study, clipping: float,
                                                                     kept: str) -> None:  # type: ignore[no-untyped-def]
    accounts = {"a": actors.hospital, "b": actors.hospital2}
    for name, account in accounts.items():
        anchor(exchange, account, study, 1, _model(DELTAS[name]), 2)
    replies = [reply(a.address, _model(DELTAS[n]), 2, node_id=i) for i, (n, a) in enumerate(accounts.items(), start=1)]
    cfg = config(study, min_nodes=1, noise=Z, clipping=clipping)
    if not kept:  # a's norm 0.5 and b's 0.8 are both over 0.499
        with pytest.raises(StudyAborted, match=r"round 1: 0 of 1 required nodes contributed; refusals: \[.*"
                                               r"update norm 0\.5 exceeds the clipping norm 0\.499"):
            combine_round(exchange, cfg, 1, DP_SENT, replies)
        return
    outcome = combine_round(exchange, cfg, 1, DP_SENT, replies)
    assert [c.hospital for c in outcome.accepted] == [accounts[n].address for n in kept]
    assert outcome.refused == ([] if kept == "ab" else
                               [f"{actors.hospital2.address}: update norm 0.8 exceeds the clipping norm 0.5"
                                " by more than the 0.0001 allowed for float32 arithmetic: the node did not clip"])
