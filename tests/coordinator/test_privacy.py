"""The coordinator's privacy accounting and private aggregation, without Flower or a chain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coordinator.errors import StudyAborted
from coordinator.privacy import PrivacyLedger, privacy_ledger, private_mean
from coordinator.run_config import FederationConfig


def config(noise: float, clipping: float = 1.0) -> FederationConfig:
    return FederationConfig(study_id=7, task="ct-sinogram-lesion-v1", min_nodes=2, local_epochs=1, lr=0.01,
                            batch_size=8, proximal_mu=0.0, poll_interval=0.2, round_timeout=60, wait_nodes=60,
                            round_delay=0, eval_examples=8, eval_seed=1, dp_noise_multiplier=noise,
                            dp_clipping_norm=clipping, dp_delta=1e-5)


def test_a_run_must_match_the_study_it_runs() -> None:
    assert privacy_ledger(config(0.0), 0, 2, 0) is None
    with pytest.raises(StudyAborted, match="no privacy budget on chain"):
        privacy_ledger(config(1.0), 0, 2, 0)
    with pytest.raises(StudyAborted, match="launch it with dp-noise-multiplier > 0"):
        privacy_ledger(config(0.0), 3000, 2, 0)
    with pytest.raises(StudyAborted, match="dp-clipping-norm must be > 0"):
        privacy_ledger(config(1.0, clipping=0.0), 3000, 2, 0)


def test_rounds_spend_rounded_up_and_stop_before_the_budget() -> None:
    ledger = PrivacyLedger(config(2.0), 3500, 2, 0)
    assert ledger.epsilon() == 0.0
    recorded, spent = 0, []
    while ledger.next_round_fits():
        milli, total = ledger.spend_round(recorded)
        recorded += milli
        spent.append(milli)
        assert recorded == math.ceil(total * 1000)  # the chain's total covers the true epsilon
    assert len(spent) == 2
    assert recorded <= 3500
    # more rounds add less each (composition is sub-additive under RDP)
    assert spent[1] < spent[0]


def test_a_resumed_study_counts_its_earlier_rounds() -> None:
    fresh = PrivacyLedger(config(1.0), 100_000, 2, 0)
    for _ in range(3):
        fresh.spend_round(0)
    resumed = PrivacyLedger(config(1.0), 100_000, 2, 3)
    assert resumed.epsilon() == pytest.approx(fresh.epsilon())


def test_private_mean_is_the_plain_mean_plus_noise_of_the_stated_size() -> None:
    sent = [np.zeros((400, 500), dtype=np.float32)]
    # Differences of L2 norm 0.045 and 0.134, within the clipping norm: averaged as they are.
    updates = [[np.full((400, 500), 1e-4, dtype=np.float32)], [np.full((400, 500), 3e-4, dtype=np.float32)]]
    noisy = private_mean(sent, updates, config(2.0, clipping=0.5))
    out = noisy.weights[0]
    assert noisy.clip_factors == [1.0, 1.0]
    assert out.dtype == np.float32
    noise = out.astype(np.float64) - 2e-4
    assert abs(noise.mean()) < 0.01
    assert noise.std() == pytest.approx(2.0 * 0.5 / 2, rel=0.01)


def test_an_update_beyond_the_clipping_norm_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from coordinator.rounds import check_replies
    from tasks import weights_hash
    from tasks.protocol import pack_weights

    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)
    sent = [np.zeros(100, dtype=np.float32)]
    request = Message(content=RecordDict({"config": ConfigRecord({"round": 1})}), dst_node_id=1,
                      message_type=MessageType.TRAIN)

    def reply(hospital: str, step: float) -> Message:
        weights = [np.full(100, step, dtype=np.float32)]  # update norm = 10 * step
        return Message(content=RecordDict({
            "arrays": ArrayRecord({"0": Array(pack_weights(weights)[0])}),
            "metrics": MetricRecord({"train-seconds": 0.5}),
            "commitment": ConfigRecord({"hospital": hospital, "cohort-root": "0x" + "11" * 32, "cohort-count": 3,
                                        "update-hash": "0x" + weights_hash(weights).hex()}),
        }), reply_to=request)

    a, b = "0x" + "0a" * 20, "0x" + "0b" * 20
    cfg = replace(config(1.0, clipping=0.5), anchor=False)
    accepted, refused = check_replies(None, cfg, 1, sent, [reply(a, 0.05), reply(b, 0.2)])  # type: ignore[arg-type]
    assert [c.hospital for c in accepted] == ["0x0A0A0a0a0a0a0a0A0a0a0A0a0A0A0A0a0a0a0a0a"]  # checksummed
    assert accepted[0].seconds == {"train": 0.5}
    assert refused == [f"{b}: update norm 2 exceeds the clipping norm 0.5 by more than the 0.0001 allowed for "
                       "float32 arithmetic: the node did not clip"]
    # Past the norm by less than the slack (a node's float32 clipping): taken, and scaled back to the norm.
    within = check_replies(None, cfg, 1, sent, [reply(a, 0.050001)])[0]  # type: ignore[arg-type]
    assert len(within) == 1


def test_each_difference_is_scaled_back_to_the_clipping_norm_so_the_sensitivity_holds() -> None:
    from coordinator.aggregation import delta_norm

    sent = [np.zeros((3, 4), dtype=np.float32), np.ones(5, dtype=np.float32)]
    rng = np.random.default_rng(5)
    directions = [[rng.normal(0, 1, s.shape) for s in sent] for _ in range(3)]
    # One inside the norm, one a few float32 ulps past it (as a node's own clipping leaves it), one 0.9e-4 past.
    lengths = [0.7, 1.0 + 3e-7, 1.0 + 9e-5]
    updates = []
    for d, length in zip(directions, lengths, strict=True):
        scale = length / math.sqrt(sum(float(np.sum(x * x)) for x in d))
        updates.append([(s.astype(np.float64) + x * scale).astype(np.float32) for s, x in zip(sent, d, strict=True)])
    noisy = private_mean(sent, updates, config(1e-9, clipping=1.0), np.random.default_rng(0))
    norms = [delta_norm(sent, u) for u in updates]
    assert noisy.clip_factors[0] == 1.0
    assert norms[0] < 1.0
    for i in (1, 2):
        assert norms[i] > 1.0
        assert noisy.clip_factors[i] == 1.0 / norms[i]
        # What enters the mean has norm at most C, up to float64 rounding (relative 1e-15), not 1e-4 more.
        scaled = [(u.astype(np.float64) - s.astype(np.float64)) * noisy.clip_factors[i]
                  for u, s in zip(updates[i], sent, strict=True)]
        assert math.sqrt(math.fsum(float(v) for x in scaled for v in (x * x).ravel())) <= 1.0 + 1e-15


def reference_epsilon(noise: float, rounds: int, delta: float = 1e-5) -> float:
    """Epsilon of ``rounds`` Gaussian releases, from Google's dp_accounting directly (not through Flower)."""
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant

    accountant = rdp_privacy_accountant.RdpAccountant()
    accountant.compose(dp_event.GaussianDpEvent(noise), rounds)
    return float(accountant.get_epsilon(delta))


def closed_form_epsilon(noise: float, rounds: int, delta: float = 1e-5) -> float:
    """The same bound from its formula: RDP k*a/(2 z^2) of a Gaussian, converted at the best integer order."""
    return min(rounds * a / (2 * noise**2) + math.log((a - 1) / a) - (math.log(delta) + math.log(a)) / (a - 1)
               for a in range(2, 257))


@pytest.mark.parametrize(("noise", "rounds"), [(2.0, 1), (2.0, 3), (1.1, 5), (4.0, 2)])
def test_epsilon_is_the_gaussian_mechanism_composed_once_per_round(noise: float, rounds: int) -> None:
    ledger = PrivacyLedger(config(noise), 1_000_000, 3, 0)
    for _ in range(rounds):
        ledger.spend_round(0)
    assert ledger.epsilon() == pytest.approx(reference_epsilon(noise, rounds), rel=1e-9)
    # and the reference is the textbook bound (dp_accounting adds fractional orders, so it is at most it)
    assert reference_epsilon(noise, rounds) <= closed_form_epsilon(noise, rounds) * 1.0001
    assert reference_epsilon(noise, rounds) >= closed_form_epsilon(noise, rounds) * 0.97


@pytest.mark.parametrize("done", [0, 1, 3])
def test_a_round_that_reaches_the_budget_exactly_fits_one_milli_epsilon_more_does_not(done: int) -> None:
    after = math.ceil(reference_epsilon(2.0, done + 1) * 1000)  # what the chain would record after the round
    assert PrivacyLedger(config(2.0), after, 2, done).next_round_fits()
    assert not PrivacyLedger(config(2.0), after - 1, 2, done).next_round_fits()


def test_the_ledger_a_run_gets_counts_the_rounds_already_recorded() -> None:
    ledger = privacy_ledger(config(1.5), 10_000, 4, 2)
    assert ledger is not None
    assert ledger.epsilon() == pytest.approx(reference_epsilon(1.5, 2), rel=1e-9)
    milli, total = ledger.spend_round(0)
    assert total == pytest.approx(reference_epsilon(1.5, 3), rel=1e-9)
    assert milli == math.ceil(total * 1000)
    assert ledger.budget_milli == 10_000
    assert privacy_ledger(config(1.5), 10_000, 4, 0).epsilon() == 0.0  # type: ignore[union-attr]


def test_refusals_say_what_to_change() -> None:
    with pytest.raises(StudyAborted) as no_budget:
        privacy_ledger(config(1.0), 0, 2, 0)
    assert str(no_budget.value) == ("study 7 has no privacy budget on chain, so its rounds cannot record the epsilon "
                                    "they spend: launch it with dp-noise-multiplier = 0, or request a study with a "
                                    "budget")
    with pytest.raises(StudyAborted) as no_noise:
        privacy_ledger(config(0.0), 3500, 2, 0)
    assert str(no_noise.value) == ("study 7 was approved with differential privacy (budget epsilon 3.5): launch it "
                                   "with dp-noise-multiplier > 0")


@pytest.mark.parametrize(("clipping", "delta", "accepted"), [
    (0.5, 1e-5, True), (1e-3, 0.999, True), (0.0, 1e-5, False), (-1.0, 1e-5, False),
    (1.0, 0.0, False), (1.0, 1.0, False), (1.0, 1.5, False), (1.0, -1e-5, False),
])
def test_clipping_norm_and_delta_are_checked_at_their_bounds(clipping: float, delta: float, accepted: bool) -> None:
    from dataclasses import replace

    cfg = replace(config(1.0, clipping=clipping), dp_delta=delta)
    if accepted:
        assert privacy_ledger(cfg, 3000, 2, 0) is not None
    else:
        with pytest.raises(StudyAborted, match=r"dp-clipping-norm must be > 0 and dp-delta in \(0, 1\)"):
            privacy_ledger(cfg, 3000, 2, 0)


def test_private_mean_averages_each_array_around_the_model_sent() -> None:
    sent = [np.array([[1.0, -2.0], [3.0, 0.5]], dtype=np.float32), np.array([10.0, 20.0, 30.0], dtype=np.float32)]
    updates = [
        [np.array([[2.0, -2.0], [3.0, 1.5]], dtype=np.float32), np.array([10.0, 21.0, 30.0], dtype=np.float32)],
        [np.array([[1.0, -1.0], [5.0, 0.5]], dtype=np.float32), np.array([12.0, 20.0, 27.0], dtype=np.float32)],
        [np.array([[1.0, -2.0], [3.0, 0.5]], dtype=np.float32), np.array([10.0, 20.0, 30.0], dtype=np.float32)],
    ]
    noiseless = private_mean(sent, updates, config(1e-12, clipping=10.0)).weights  # within C; std 1e-12 * C / 3
    expected = [np.array([[4.0 / 3, -5.0 / 3], [11.0 / 3, 5.0 / 6]]), np.array([32.0 / 3, 61.0 / 3, 29.0])]
    for got, want, base in zip(noiseless, expected, sent, strict=True):
        assert (got.dtype, got.shape) == (base.dtype, base.shape)
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_private_noise_is_added_from_the_generator_given() -> None:
    sent = [np.full(1000, 5.0, dtype=np.float64)]
    updates = [[np.full(1000, 6.0)], [np.full(1000, 8.0)]]
    noisy = private_mean(sent, updates, config(3.0, clipping=100.0), np.random.default_rng(11))
    drawn = np.random.default_rng(11).normal(0.0, 3.0 * 100.0 / 2, 1000)
    np.testing.assert_allclose(noisy.weights[0], 5.0 + 2.0 + drawn, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(noisy.noise[0], drawn)  # the noise returned is the noise added
    assert noisy.update_weights == [0.5, 0.5]


def test_a_round_spends_nothing_more_when_the_chain_already_records_its_total() -> None:
    ledger = PrivacyLedger(config(2.0), 100_000, 2, 1)
    milli, total = ledger.spend_round(recorded_milli=100_000)
    assert milli == 0
    assert total == pytest.approx(reference_epsilon(2.0, 2), rel=1e-9)
