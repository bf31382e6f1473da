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
    updates = [[np.full((400, 500), 0.1, dtype=np.float32)], [np.full((400, 500), 0.3, dtype=np.float32)]]
    out = private_mean(sent, updates, config(2.0, clipping=0.5))[0]
    assert out.dtype == np.float32
    noise = out.astype(np.float64) - 0.2
    assert abs(noise.mean()) < 0.01
    assert noise.std() == pytest.approx(2.0 * 0.5 / 2, rel=0.01)


def test_an_update_beyond_the_clipping_norm_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from coordinator.rounds import check_replies
    from tasks import weights_hash

    for name in ("_run_id", "_node_id", "_task_id"):
        monkeypatch.setattr(TaskIdentity, name, 1)
    sent = [np.zeros(100, dtype=np.float32)]
    request = Message(content=RecordDict({"config": ConfigRecord({"round": 1})}), dst_node_id=1,
                      message_type=MessageType.TRAIN)

    def reply(hospital: str, step: float) -> Message:
        weights = [np.full(100, step, dtype=np.float32)]  # update norm = 10 * step
        return Message(content=RecordDict({
            "arrays": ArrayRecord({"0": Array(weights[0])}),
            "metrics": MetricRecord({"train-seconds": 0.5}),
            "commitment": ConfigRecord({"hospital": hospital, "cohort-root": "0x" + "11" * 32, "cohort-count": 3,
                                        "update-hash": "0x" + weights_hash(weights).hex()}),
        }), reply_to=request)

    cfg = replace(config(1.0, clipping=0.5), anchor=False)
    accepted, refused = check_replies(None, cfg, 1, sent, [reply("0xA", 0.05), reply("0xB", 0.2)])  # type: ignore[arg-type]
    assert [c.hospital for c in accepted] == ["0xA"]
    assert accepted[0].seconds == {"train": 0.5}
    assert refused == ["0xB: update norm 2 exceeds the clipping norm 0.5"]
