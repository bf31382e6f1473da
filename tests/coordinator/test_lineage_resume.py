"""The lineage bundle across a coordinator crash: a study resumed from the chain's
``rounds_completed`` keeps the earlier rounds' files byte for byte, drops what no anchor covers,
continues from the anchored model, and completes with a bundle whose index is the lineage hash."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from eth_utils.crypto import keccak

from contracts.exchange import Exchange
from coordinator import federation
from coordinator.errors import StudyAborted
from coordinator.lineage import bundle_folder
from coordinator.study_log import read_study_log, study_folder
from tasks import load_weights, weights_hash
from tests.conftest import Actors
from tests.coordinator.lineage_runs import load_json, recomputed_model, run, start_study


class Crash(Exception):
    """The coordinator process dying at a chosen point."""


@pytest.fixture(autouse=True)
def _no_model_card(monkeypatch: pytest.MonkeyPatch) -> None:
    # The card is tested elsewhere; here it only costs each run seconds of robustness evaluation.
    monkeypatch.setattr(federation, "_write_card", lambda *args, **kwargs: None)


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _crash_at_round_2(monkeypatch: pytest.MonkeyPatch, exchange: Exchange, where: str) -> None:
    if where == "before-round-2":  # the round's messages never go out
        from tests.coordinator.round_replies import ScriptedGrid

        push = ScriptedGrid.push_messages

        def pushing(self, messages):  # type: ignore[no-untyped-def]
            messages = list(messages)
            if messages and messages[0].metadata.group_id == "2":
                raise Crash("coordinator killed before round 2")
            return push(self, messages)

        monkeypatch.setattr(ScriptedGrid, "push_messages", pushing)
    else:  # round 2's files are written, its anchoring transaction never sent
        record = exchange.studies.record_round

        def recording(coordinator, study_id, round_, *args, **kwargs):  # type: ignore[no-untyped-def]
            if round_ == 2:
                raise Crash("coordinator killed while anchoring round 2")
            return record(coordinator, study_id, round_, *args, **kwargs)

        monkeypatch.setattr(exchange.studies, "record_round", recording)


@pytest.mark.parametrize("where", ["before-round-2", "while-anchoring-round-2"])
@pytest.mark.parametrize("dp", [False, True], ids=["fedavg", "dp"])
def test_a_study_resumed_after_a_crash_keeps_round_1_and_completes_a_consistent_bundle(
        exchange: Exchange, actors: Actors, tmp_path: Path, where: str, dp: bool) -> None:
    study_id, cfg = start_study(exchange, actors, dp=dp)
    bundle = bundle_folder(study_folder(tmp_path, study_id))
    with pytest.MonkeyPatch.context() as patch:
        _crash_at_round_2(patch, exchange, where)
        with pytest.raises(Crash):
            run(exchange, actors, tmp_path, study_id, cfg)
    assert exchange.studies.study(study_id).rounds_completed == 1
    after_crash = _files(bundle)
    assert "bundle.json" not in after_crash
    assert ("rounds/2/model.npz" in after_crash) == (where == "while-anchoring-round-2")
    round_1 = {name: digest for name, digest in after_crash.items() if not name.startswith("rounds/2/")}

    resumed = run(exchange, actors, tmp_path, study_id, cfg)

    final = _files(bundle)
    assert {name: final[name] for name in round_1} == round_1  # initial.npz, run.json and round 1, untouched
    study = exchange.studies.study(study_id)
    assert keccak((bundle / "bundle.json").read_bytes()) == study.lineage_hash
    assert load_json(bundle / "bundle.json")["files"] == {k: v for k, v in final.items() if k != "bundle.json"}
    # Round 2 started from round 1's anchored model, not from a fresh one.
    round_1_model = load_weights(bundle / "rounds/1/model.npz")
    assert weights_hash(resumed.grid.sent[2]) == weights_hash(round_1_model) == \
        exchange.studies.round_model_hash(study_id, 1)
    settings = load_json(bundle / "run.json")
    for round_ in (1, 2):
        saved = load_weights(bundle / f"rounds/{round_}/model.npz")
        assert [a.tobytes() for a in recomputed_model(bundle, round_, settings)] == [a.tobytes() for a in saved]
    assert weights_hash(load_weights(bundle / "rounds/2/model.npz")) == study.final_model_hash
    assert [r.round for r in read_study_log(study_folder(tmp_path, study_id)).rounds] == [1, 2]


def test_a_resumed_study_launched_with_other_settings_is_refused_naming_them(
        exchange: Exchange, actors: Actors, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study_id, cfg = start_study(exchange, actors, dp=False)
    with pytest.MonkeyPatch.context() as patch:
        _crash_at_round_2(patch, exchange, "before-round-2")
        with pytest.raises(Crash):
            run(exchange, actors, tmp_path, study_id, cfg)
    with pytest.raises(StudyAborted, match=r"the earlier rounds ran with other settings \(lr: \[0\.01\] then, "
                                           r"\[0\.02\] now\); launch the study again with the settings it started"):
        run(exchange, actors, tmp_path, study_id, replace(cfg, lr=0.02))


@pytest.mark.parametrize(("lost", "why"), [
    ("rounds/1/model.npz", r"the lineage bundle lacks rounds/1/model\.npz; a study resumed at round 2 needs"),
    ("initial.npz", r"the lineage bundle lacks initial\.npz; a study resumed at round 2 needs"),
])
def test_a_resumed_study_whose_earlier_files_are_lost_is_refused_before_any_round(
        exchange: Exchange, actors: Actors, tmp_path: Path, lost: str, why: str) -> None:
    study_id, cfg = start_study(exchange, actors, dp=False)
    with pytest.MonkeyPatch.context() as patch:
        _crash_at_round_2(patch, exchange, "before-round-2")
        with pytest.raises(Crash):
            run(exchange, actors, tmp_path, study_id, cfg)
    (bundle_folder(study_folder(tmp_path, study_id)) / lost).unlink()
    with pytest.raises(StudyAborted, match=why):
        run(exchange, actors, tmp_path, study_id, cfg)
    assert exchange.studies.study(study_id).rounds_completed == 1


def test_a_resumed_study_whose_last_model_is_not_the_anchored_one_is_refused(
        exchange: Exchange, actors: Actors, tmp_path: Path) -> None:
    from tasks import save_weights

    study_id, cfg = start_study(exchange, actors, dp=False)
    with pytest.MonkeyPatch.context() as patch:
        _crash_at_round_2(patch, exchange, "before-round-2")
        with pytest.raises(Crash):
            run(exchange, actors, tmp_path, study_id, cfg)
    model = bundle_folder(study_folder(tmp_path, study_id)) / "rounds/1/model.npz"
    save_weights(model, [w + np.float32(1) for w in load_weights(model)])
    with pytest.raises(StudyAborted, match=r"rounds/1/model\.npz hashes to 0x[0-9a-f]{64}, but the chain records "
                                           r"0x[0-9a-f]{64} for round 1; restore the study's folder"):
        run(exchange, actors, tmp_path, study_id, cfg)


def test_without_anchoring_the_bundle_is_still_written_and_indexed(exchange: Exchange, actors: Actors,
                                                                   tmp_path: Path) -> None:
    study_id, cfg = start_study(exchange, actors, dp=False)
    done = run(exchange, actors, tmp_path, study_id, replace(cfg, anchor=False))
    index = load_json(done.bundle / "bundle.json")
    assert index["files"] == {k: v for k, v in _files(done.bundle).items() if k != "bundle.json"}
    assert {"rounds/1/model.npz", "rounds/2/model.npz", "final.npz"} <= set(index["files"])
    study = exchange.studies.study(study_id)
    assert (study.rounds_completed, study.lineage_hash) == (0, bytes(32))  # nothing anchored
