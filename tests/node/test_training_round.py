"""A node's round, function by function, on one small hospital: the study checks and their messages,
labels, local training as the task's own ``train`` does it, and the anchored contribution with the
cohort the node keeps.

One node holds four consenting patients' sinogram records (two with a lesion); the expected training
result is computed here with ``tasks.train`` on the records the cohort names, not by the round code.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from contracts.datause import NO_EXPIRY, Kind, Purpose, Scope
from contracts.studies import StudyRequest
from node.kept_cohort import read_kept_cohort
from node.training import (
    LABELS,
    StudyRefused,
    anchor_contribution,
    check_study,
    label_of,
    train_local,
    train_round,
)
from tests.federated.conftest import TASK

RECORDS = 4


@pytest.fixture(scope="module")
def hospital(module_make_node, tmp_path_factory: pytest.TempPathFactory, module_exchange, actors):  # type: ignore[no-untyped-def]
    """A node with four ingested, registered, enrolled records of TASK whose patients consent to any use."""
    from node.datasets import register_drafts
    from node.enrol import enrol, issue_challenge
    from node.ingest import Ingestor, read_sidecar
    from tasks import get_task

    node = module_make_node("Unit Hospital")
    folder = tmp_path_factory.mktemp("unit-data") / "data"
    ids = [f"TEST-U-{i:03d}" for i in range(RECORDS)]
    written = get_task(TASK).write_synthetic_records(folder, RECORDS, 11, ids)
    sidecar = folder.parent / "labels.csv"
    sidecar.write_text("file,label\n" + "".join(f"{p.name},{'lesion' if y else 'normal'}\n" for p, y in written))
    report = Ingestor(node, sidecar=read_sidecar(sidecar)).run([folder])
    assert len(report.ingested) == RECORDS, report.quarantined
    register_drafts(node)
    for pid in ids:
        key = Account.create()
        signature = key.sign_message(encode_defunct(text=issue_challenge(node, pid).text)).signature.hex()
        enrol(node, pid, key.address, signature)
        module_exchange.consent.relay(actors.coordinator, module_exchange.consent.sign_grant(
            key, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY))
    return node


@pytest.fixture(autouse=True)
def no_kept_cohorts(request: pytest.FixtureRequest) -> None:
    """Start each test with no kept cohort: study ids come back when the chain is reverted after a test."""
    import shutil

    if "hospital" in request.fixturenames:
        shutil.rmtree(Path(request.getfixturevalue("hospital").dir) / "cohorts", ignore_errors=True)


def _request(exchange, actors, hospitals: tuple[str, ...], *, code_hash: bytes | None = None,  # type: ignore[no-untyped-def]
             budget: int = 0) -> int:
    from tasks import task_code_hash

    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=hospitals,
        task_code_hash=task_code_hash(TASK) if code_hash is None else code_hash, rounds=2, privacy_budget=budget))
    return int(study_id)


def _running(exchange, actors, node, **kwargs: Any) -> int:  # type: ignore[no-untyped-def]
    study_id = _request(exchange, actors, (node.address,), **kwargs)
    exchange.studies.approve(node.account, study_id)
    exchange.studies.start(actors.coordinator, study_id)
    return study_id


def _weights() -> list[np.ndarray]:
    from tasks import get_task, get_weights

    return get_weights(get_task(TASK).build_model())


# ---------------------------------------------------------------------- check_study


def test_a_running_approved_study_of_this_task_passes(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study_id = _running(exchange, actors, hospital)
    assert check_study(hospital, study_id, TASK, exchange.chain.block_number) is None


def test_a_study_not_yet_running_is_refused(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study_id = _request(exchange, actors, (hospital.address,))
    exchange.studies.approve(hospital.account, study_id)
    with pytest.raises(StudyRefused, match=f"^study {study_id} is REQUESTED, not RUNNING: nothing to train$"):
        check_study(hospital, study_id, TASK, exchange.chain.block_number)


def test_the_study_is_judged_as_of_the_block_given(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study_id = _request(exchange, actors, (hospital.address,))
    exchange.studies.approve(hospital.account, study_id)
    before_start = exchange.chain.block_number
    exchange.studies.start(actors.coordinator, study_id)
    check_study(hospital, study_id, TASK, exchange.chain.block_number)
    with pytest.raises(StudyRefused, match="is REQUESTED, not RUNNING"):
        check_study(hospital, study_id, TASK, before_start)


def test_a_hospital_that_has_not_approved_is_refused(hospital, make_node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    other = make_node("Other Hospital")
    study_id = _running(exchange, actors, other)
    message = (f"^hospital {hospital.address} has not approved study {study_id} \\(decision NONE\\): "
               "it trains on nothing$")
    with pytest.raises(StudyRefused, match=message):
        check_study(hospital, study_id, TASK, exchange.chain.block_number)


def test_a_study_approved_for_other_code_is_refused(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    from eth_utils.crypto import keccak

    from tasks import task_code_hash

    approved = keccak(b"other code")
    study_id = _running(exchange, actors, hospital, code_hash=approved)
    message = (f"^task '{TASK}' here hashes to 0x{task_code_hash(TASK).hex()}, study {study_id} was approved for "
               f"0x{approved.hex()}: refusing to run code the committee did not approve$")
    with pytest.raises(StudyRefused, match=message):
        check_study(hospital, study_id, TASK, exchange.chain.block_number)


@pytest.mark.parametrize(("budget", "epsilon"), [(1, "0.001"), (1500, "1.5")])
def test_a_private_study_needs_clipped_updates(hospital, exchange, actors, budget: int, epsilon: str) -> None:  # type: ignore[no-untyped-def]
    study_id = _running(exchange, actors, hospital, budget=budget)
    block = exchange.chain.block_number
    message = (f"^study {study_id} was approved with differential privacy \\(budget epsilon {epsilon}\\) but this "
               "round does not ask for clipped updates: refusing to send an unclipped update$")
    with pytest.raises(StudyRefused, match=message):
        check_study(hospital, study_id, TASK, block)
    assert check_study(hospital, study_id, TASK, block, clipping_norm=1.0) is None


# ---------------------------------------------------------------------- label_of


@pytest.mark.parametrize(("raw", "value"), [("lesion", 1), ("1", 1), ("yes", 1), ("normal", 0), ("0", 0), ("no", 0),
                                            (" Lesion ", 1), ("NORMAL\n", 0), ("Yes", 1)])
def test_labels_map_to_their_class_whatever_the_case_and_spacing(raw: str, value: int) -> None:
    assert label_of(raw, "rec-1") == value


@pytest.mark.parametrize("raw", [None, "", "DOE^JANE", "2", "maybe"])
def test_a_record_without_a_usable_label_is_refused_naming_the_record_not_the_label(raw: str | None) -> None:
    choices = str(sorted(LABELS)).replace("[", r"\[").replace("]", r"\]")
    message = (f"^record rec-7 has no usable label \\(not one of {choices}\\); correct its row in the "
               "labels sidecar and ingest again$")
    with pytest.raises(StudyRefused, match=message) as refused:
        label_of(raw, "rec-7")
    if raw:
        assert raw not in str(refused.value)


# ---------------------------------------------------------------------- train_local


def _expected(hospital, cohort, round_: int, weights, **config: Any):  # type: ignore[no-untyped-def]
    """Train the task's model with tasks.train on the cohort's records, as a round should."""
    import torch

    from tasks import TrainConfig, get_task, get_weights, set_weights, train

    task = get_task(TASK)
    inputs = torch.stack([task.load_record(hospital.dir / m.path, m.format) for m in cohort.members])
    labels = torch.tensor([1 if m.label == "lesion" else 0 for m in cohort.members])
    model = task.build_model()
    set_weights(model, weights)
    metrics = train(model, inputs, labels, TrainConfig(seed=round_, **config), weights)
    return get_weights(model), metrics


@pytest.mark.parametrize("round_", [1, 2])
def test_a_round_trains_the_cohort_as_tasks_train_does_seeded_by_the_round(hospital, exchange, actors,  # type: ignore[no-untyped-def]
                                                                           round_: int) -> None:
    study_id = _running(exchange, actors, hospital)
    weights = [w + 0.01 for w in _weights()]  # not the model's initial weights: the round must load them
    block = exchange.chain.block_number
    started = time.perf_counter()
    trained = train_local(hospital, study_id=study_id, round_=round_, task_code=TASK, weights=weights, epochs=2,
                          lr=0.003, batch_size=3, proximal_mu=0.5)
    elapsed = time.perf_counter() - started
    assert (trained.cohort.study_id, trained.cohort.block, trained.cohort.count) == (study_id, block, RECORDS)
    expected, metrics = _expected(hospital, trained.cohort, round_, weights, epochs=2, lr=0.003, batch_size=3,
                                  proximal_mu=0.5)
    for got, want in zip(trained.weights, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert trained.metrics == {k: float(v) for k, v in metrics.items()}
    assert all(type(v) is float for v in trained.metrics.values())
    assert trained.metrics["examples"] == RECORDS
    assert set(trained.seconds) == {"check", "cohort", "load", "train", "train_cpu"}
    assert all(s >= 0 for s in trained.seconds.values())
    wall = ("check", "cohort", "load", "train")
    assert sum(trained.seconds[part] for part in wall) <= elapsed  # parts of the call, each measured once
    assert 0 < trained.seconds["train_cpu"] <= trained.seconds["train"] + 0.01  # this thread's CPU in training


def test_rounds_with_different_numbers_train_differently(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study_id = _running(exchange, actors, hospital)
    runs = [train_local(hospital, study_id=study_id, round_=r, task_code=TASK, weights=_weights(), epochs=1,
                        lr=0.003, batch_size=3, proximal_mu=0.0).weights for r in (1, 2)]
    assert any(not np.array_equal(a, b) for a, b in zip(*runs, strict=True))


def test_a_private_study_trains_when_the_round_asks_for_clipping(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study_id = _running(exchange, actors, hospital, budget=2000)
    trained = train_local(hospital, study_id=study_id, round_=1, task_code=TASK, weights=_weights(), epochs=1,
                          lr=0.001, batch_size=4, proximal_mu=0.0, clipping_norm=1.0)
    assert trained.metrics["examples"] == RECORDS


def test_a_hospital_without_consenting_records_is_refused(make_node, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    empty = make_node("Empty Hospital")
    study_id = _running(exchange, actors, empty)
    block = exchange.chain.block_number
    with pytest.raises(StudyRefused, match=f"^no consenting records of the task's kind for study {study_id} "
                                           f"at block {block}$"):
        train_local(empty, study_id=study_id, round_=1, task_code=TASK, weights=_weights(), epochs=1, lr=0.001,
                    batch_size=4, proximal_mu=0.0)


def test_records_in_no_registered_dataset_are_left_out_and_the_refusal_says_how_to_register_them(  # type: ignore[no-untyped-def]
        make_node, exchange, actors, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from node.enrol import enrol, issue_challenge
    from node.ingest import Ingestor, read_sidecar
    from tasks import get_task

    node = make_node("Unregistered Hospital")
    ids = ["TEST-N-000", "TEST-N-001"]
    written = get_task(TASK).write_synthetic_records(tmp_path / "data", 2, 5, ids)
    sidecar = tmp_path / "labels.csv"
    sidecar.write_text("file,label\n" + "".join(f"{p.name},{'lesion' if y else 'normal'}\n" for p, y in written))
    assert len(Ingestor(node, sidecar=read_sidecar(sidecar)).run([tmp_path / "data"]).ingested) == 2
    for pid in ids:  # enrolled and consenting: only the missing registration keeps them out
        key = Account.create()
        enrol(node, pid, key.address, key.sign_message(encode_defunct(text=issue_challenge(node, pid).text))
              .signature.hex())
        exchange.consent.relay(actors.coordinator, exchange.consent.sign_grant(
            key, Scope(purpose=Purpose.GRU), Kind.CT_SINOGRAM, NO_EXPIRY))
    study_id = _running(exchange, actors, node)
    block = exchange.chain.block_number
    left_out = (f"2 records of enrolled patients of the study's kinds are in no dataset this node registered on "
                f"chain by block {block} and were left out: register the drafts with `metai-node register DRAFT` "
                "(`metai-node datasets` lists them)")
    with pytest.raises(StudyRefused) as refused:
        train_local(node, study_id=study_id, round_=1, task_code=TASK, weights=_weights(), epochs=1, lr=0.001,
                    batch_size=4, proximal_mu=0.0)
    assert str(refused.value) == (f"no consenting records of the task's kind for study {study_id} at block {block}; "
                                  f"{left_out}")
    assert [r.getMessage() for r in caplog.records if r.name == "node.training"] == [
        f"study {study_id} round 1: {left_out}"]


def test_a_refused_study_trains_nothing(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    study_id = _request(exchange, actors, (hospital.address,))
    with pytest.raises(StudyRefused, match="not RUNNING"):
        train_local(hospital, study_id=study_id, round_=1, task_code=TASK, weights=_weights(), epochs=1, lr=0.001,
                    batch_size=4, proximal_mu=0.0)


# ---------------------------------------------------------------------- anchor_contribution


class RecordingSigner:
    """Signs with the node's key and records each transaction it signs (a stand-in for RemoteSigner)."""

    def __init__(self, account) -> None:  # type: ignore[no-untyped-def]
        self.account = account
        self.address = account.address
        self.signed: list[dict[str, Any]] = []

    def sign_transaction(self, tx: dict[str, Any]):  # type: ignore[no-untyped-def]
        self.signed.append(dict(tx))
        return self.account.sign_transaction(tx)


def _cohort_file(node, study_id: int, round_: int) -> Path:  # type: ignore[no-untyped-def]
    return Path(node.dir) / "cohorts" / f"study-{study_id}" / f"round-{round_}.json"


@pytest.mark.parametrize("with_signer", [False, True])
def test_a_contribution_is_anchored_with_its_cohort_and_the_cohort_kept(hospital, exchange, actors,  # type: ignore[no-untyped-def]
                                                                        with_signer: bool) -> None:
    from tasks import weights_hash

    study_id = _running(exchange, actors, hospital)
    weights = [w * 0.5 for w in _weights()]
    trained = train_local(hospital, study_id=study_id, round_=1, task_code=TASK, weights=weights, epochs=1,
                          lr=0.001, batch_size=4, proximal_mu=0.0)
    signer = RecordingSigner(hospital.account) if with_signer else None
    started = time.perf_counter()
    anchored = anchor_contribution(hospital, trained.cohort, 1, trained.weights, signer=signer)
    assert anchored.seconds <= time.perf_counter() - started  # the time of this call, not a clock reading
    assert anchored.update_hash == weights_hash(trained.weights)
    assert anchored.tx_hash.startswith("0x")
    assert len(anchored.tx_hash) == 66  # a transaction hash, 32 bytes
    assert anchored.seconds >= 0
    if signer is not None:
        assert len(signer.signed) == 1  # the signer, not the node's own key, signed the contribution
    on_chain = exchange.studies.contribution_of(study_id, 1, hospital.address)
    assert (on_chain.cohort_root, on_chain.cohort_count) == (trained.cohort.root, RECORDS)
    path = _cohort_file(hospital, study_id, 1)
    # The kept cohort and the manifest as sent, no temporary file left.
    assert sorted(p.name for p in path.parent.iterdir()) == ["manifest-1.json", "round-1.json"]
    assert (path.parent / "manifest-1.json").read_text(encoding="utf-8") == anchored.manifest
    kept = json.loads(path.read_text(encoding="utf-8"))
    assert kept == {
        "format": "metai-kept-cohort",
        "version": 2,
        "study_id": study_id,
        "round": 1,
        "block": trained.cohort.block,
        "root": "0x" + trained.cohort.root.hex(),
        "count": RECORDS,
        "dataset_ids": list(on_chain.dataset_ids),
        "members": [{"record_id": m.record_id, "kind": int(Kind.CT_SINOGRAM), "patient": m.patient,
                     "dataset_id": on_chain.dataset_ids[0]} for m in trained.cohort.members],
    }
    assert read_kept_cohort(hospital.dir, study_id, 1).to_json() == kept


def test_without_anchoring_the_update_is_only_hashed(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    from tasks import weights_hash

    study_id = _running(exchange, actors, hospital)
    trained = train_local(hospital, study_id=study_id, round_=1, task_code=TASK, weights=_weights(), epochs=1,
                          lr=0.001, batch_size=4, proximal_mu=0.0)
    started = time.perf_counter()
    anchored = anchor_contribution(hospital, trained.cohort, 1, trained.weights, anchor=False)
    assert (anchored.update_hash, anchored.tx_hash) == (weights_hash(trained.weights), "")
    assert 0 <= anchored.seconds <= time.perf_counter() - started
    assert exchange.studies.contribution_of(study_id, 1, hospital.address) is None
    assert not _cohort_file(hospital, study_id, 1).exists()


def test_two_rounds_each_return_their_training_and_transaction_and_keep_both_cohorts(  # type: ignore[no-untyped-def]
        hospital, exchange, actors) -> None:
    study_id = _running(exchange, actors, hospital)
    weights = _weights()
    for round_ in (1, 2):
        result = train_round(hospital, study_id=study_id, round_=round_, task_code=TASK, weights=weights, epochs=1,
                             lr=0.002, batch_size=3, proximal_mu=0.0)
        expected, metrics = _expected(hospital, result.cohort, round_, weights, epochs=1, lr=0.002, batch_size=3)
        for got, want in zip(result.weights, expected, strict=True):
            np.testing.assert_array_equal(got, want)
        assert result.metrics == {k: float(v) for k, v in metrics.items()}
        receipt = exchange.chain.w3.eth.get_transaction_receipt(result.tx_hash)
        on_chain = exchange.studies.contribution_of(study_id, round_, hospital.address)
        assert (receipt["status"], receipt["blockNumber"]) == (1, on_chain.block_number)
        assert receipt["from"] == hospital.address
        exchange.studies.record_round(actors.coordinator, study_id, round_, result.update_hash, [hospital.address])
    # The study's folder exists from round 1 on; round 2 adds its file beside it.
    assert sorted(p.name for p in _cohort_file(hospital, study_id, 1).parent.iterdir()) == [
        "manifest-1.json", "manifest-2.json", "round-1.json", "round-2.json"]


def test_a_round_judges_the_study_at_the_block_it_builds_the_cohort_at(hospital, exchange, actors,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # The round reads the block once and uses it for the study check and the cohort alike: a study
    # that was not yet running at that block is refused, even if it runs by the time it is asked.
    study_id = _request(exchange, actors, (hospital.address,))
    exchange.studies.approve(hospital.account, study_id)
    pinned = exchange.chain.block_number
    exchange.studies.start(actors.coordinator, study_id)
    monkeypatch.setattr(type(hospital.exchange.chain), "block_number", property(lambda self: pinned))
    with pytest.raises(StudyRefused, match=f"^study {study_id} is REQUESTED, not RUNNING: nothing to train$"):
        train_local(hospital, study_id=study_id, round_=1, task_code=TASK, weights=_weights(), epochs=1, lr=0.001,
                    batch_size=4, proximal_mu=0.0)


def test_a_round_over_a_record_without_a_label_is_refused_naming_that_record(hospital, exchange, actors) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy import select

    from node.catalog import Record

    study_id = _running(exchange, actors, hospital)
    with hospital.sessions() as s:
        record = s.scalars(select(Record).order_by(Record.record_id)).first()
        record_id, label = record.record_id, record.label
        record.label = "DOE^JANE"  # a name in the label column: a shifted sidecar
        s.commit()
    try:
        with pytest.raises(StudyRefused) as refused:
            train_local(hospital, study_id=study_id, round_=1, task_code=TASK, weights=_weights(), epochs=1,
                        lr=0.001, batch_size=4, proximal_mu=0.0)
        assert str(refused.value).startswith(f"record {record_id} has no usable label")
        assert "DOE^JANE" not in str(refused.value)
    finally:
        with hospital.sessions() as s:
            s.get(Record, record_id).label = label
            s.commit()
