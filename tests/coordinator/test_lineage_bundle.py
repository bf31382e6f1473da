"""A study's lineage bundle, from studies run through ``run_study`` with scripted nodes on Anvil:
every file indexed with its SHA-256, the index's keccak256 anchored as the lineage hash, every
round's model recomputed bit for bit from the saved updates (and noise) by the arithmetic of
docs/formats/lineage-bundle.md, written here again, not taken from coordinator/."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from eth_utils.crypto import keccak

from contracts.exchange import Exchange
from tasks import load_weights, weights_hash
from tests.conftest import Actors
from tests.coordinator.lineage_runs import (
    CLIPPING,
    COUNTS,
    NOISE,
    Run,
    load_json,
    recomputed_model,
    run,
    start_study,
)


@pytest.fixture(scope="module", params=["fedavg", "dp"])
def done(request: pytest.FixtureRequest, module_exchange: Exchange, actors: Actors,
         tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A two-round study run to completion, without and with differential privacy (no model card: it is
    tested elsewhere, and its robustness evaluation would take most of the run's time)."""
    from coordinator import federation

    study_id, cfg = start_study(module_exchange, actors, dp=request.param == "dp")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(federation, "_write_card", lambda *args, **kwargs: None)
        return run(module_exchange, actors, tmp_path_factory.mktemp(request.param), study_id, cfg)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_index_lists_every_other_file_of_the_bundle_with_its_sha256(done: Run) -> None:
    index = load_json(done.bundle / "bundle.json")
    on_disk = {p.relative_to(done.bundle).as_posix() for p in done.bundle.rglob("*") if p.is_file()}
    assert set(index["files"]) == on_disk - {"bundle.json"}
    assert {name: _sha256(done.bundle / name) for name in index["files"]} == index["files"]
    expected = {"run.json", "initial.npz", "final.npz"} | {f"rounds/{r}/{f}" for r in (1, 2)
                                                           for f in ("aggregation.json", "model.npz")}
    assert expected <= on_disk
    assert ("rounds/1/noise.npz" in on_disk) == (done.cfg.dp_noise_multiplier > 0)


def test_the_index_is_canonical_json_and_its_keccak_is_the_lineage_hash_on_chain(done: Run,
                                                                                 module_exchange: Exchange) -> None:
    import json

    data = (done.bundle / "bundle.json").read_bytes()
    index = json.loads(data)
    assert data == json.dumps(index, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    study = module_exchange.studies.study(done.study_id)
    assert keccak(data) == study.lineage_hash
    assert (index["format"], index["study_id"], index["rounds"], index["chain_id"]) == \
        ("metai-lineage/1", done.study_id, 2, module_exchange.chain.chain_id)
    assert index["study_registry"] == module_exchange.studies.address
    assert index["final_model_hash"] == "0x" + study.final_model_hash.hex()
    assert weights_hash(load_weights(done.bundle / "final.npz")) == study.final_model_hash


def test_run_json_holds_the_aggregations_settings(done: Run) -> None:
    settings = load_json(done.bundle / "run.json")
    assert (settings["task"], settings["strategy"], settings["proximal_mu"]) == (done.cfg.task, "fedavg", 0.0)
    if done.cfg.dp_noise_multiplier > 0:
        assert settings["dp"] == {"clipping_norm": CLIPPING, "noise_multiplier": NOISE, "delta": 1e-5,
                                  "accountant": "rdp-gaussian/1", "sample_rate": 1.0, "population": 3}
    else:
        assert settings["dp"] is None
    np.testing.assert_array_equal(load_weights(done.bundle / "initial.npz")[0], done.grid.sent[1][0])


def test_each_update_is_saved_as_received_and_hashes_to_the_update_anchored(done: Run,
                                                                           module_exchange: Exchange) -> None:
    for round_, contributors in ((1, 3), (2, 2)):
        aggregation = load_json(done.bundle / f"rounds/{round_}/aggregation.json")
        assert len(aggregation["contributors"]) == contributors
        for hospital, count in zip(aggregation["contributors"], aggregation["cohort_counts"], strict=True):
            anchored = module_exchange.studies.contribution_of(done.study_id, round_, hospital)
            assert anchored is not None
            assert anchored.cohort_count == count
            saved = load_weights(done.bundle / f"rounds/{round_}/updates/{hospital}.npz")
            assert weights_hash(saved) == anchored.update_hash


def test_manifests_are_kept_as_sent_and_their_absence_is_recorded(done: Run, actors: Actors) -> None:
    from tests.coordinator.round_replies import ROOT_A, manifest

    for round_ in (1, 2):
        folder = done.bundle / f"rounds/{round_}"
        aggregation = load_json(folder / "aggregation.json")
        sent = manifest(done.study_id, round_, actors.hospital.address, ROOT_A, COUNTS[0]).encode()
        assert (folder / f"cohorts/{actors.hospital.address}.json").read_bytes() == sent
        assert [p.name for p in (folder / "cohorts").iterdir()] == [f"{actors.hospital.address}.json"]
        assert sorted(aggregation["manifests_missing"]) == sorted(
            a for a in aggregation["contributors"] if a != actors.hospital.address)
    assert load_json(done.bundle / "rounds/2/aggregation.json")["refused"] == [
        "node 3: cohort of 7 below the hospital's minimum today"]


def test_each_round_model_is_recomputed_bit_for_bit_from_the_bundle(done: Run) -> None:
    settings = load_json(done.bundle / "run.json")
    for round_ in (1, 2):
        saved = load_weights(done.bundle / f"rounds/{round_}/model.npz")
        again = recomputed_model(done.bundle, round_, settings)
        assert [a.dtype for a in again] == [s.dtype for s in saved]
        for mine, theirs in zip(again, saved, strict=True):
            assert mine.tobytes() == theirs.tobytes()
        assert "0x" + weights_hash(saved).hex() == load_json(done.bundle / f"rounds/{round_}/aggregation.json")[
            "model_hash"]


def test_the_clip_factors_scale_only_the_update_past_the_clipping_norm(done: Run, actors: Actors) -> None:
    for round_ in (1, 2):
        aggregation = load_json(done.bundle / f"rounds/{round_}/aggregation.json")
        if done.cfg.dp_noise_multiplier == 0:
            assert aggregation["clip_factors"] is None
            continue
        factors = dict(zip(aggregation["contributors"], aggregation["clip_factors"], strict=True))
        # The second hospital moved 3e-5 past the norm: scaled back by about that much; the others are within it.
        assert 1 - 4e-5 < factors.pop(actors.hospital2.address) < 1 - 2e-5
        assert set(factors.values()) == {1.0}


def test_the_privacy_spent_is_recorded_per_round_as_on_chain(done: Run, module_exchange: Exchange) -> None:
    spent = [load_json(done.bundle / f"rounds/{r}/aggregation.json")["milli_epsilon_spent"] for r in (1, 2)]
    assert sum(spent) == module_exchange.studies.study(done.study_id).privacy_spent
    epsilons = [load_json(done.bundle / f"rounds/{r}/aggregation.json")["epsilon_after"] for r in (1, 2)]
    if done.cfg.dp_noise_multiplier > 0:
        assert 0 < epsilons[0] < epsilons[1]
    else:
        assert epsilons == [0.0, 0.0]
        assert spent == [0, 0]
