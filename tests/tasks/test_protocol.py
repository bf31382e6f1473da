"""The round's messages keep the keys nodes and coordinators of this release exchange.

The wire names are written out here on purpose, not taken from tasks.protocol: a node and a
coordinator of different installations must agree on them, so renaming one is a protocol
change this test makes visible.
"""

from __future__ import annotations

import pytest

from tasks.errors import ProtocolError
from tasks.protocol import Commitment, TrainInstruction, read_timings, timing_metrics

INSTRUCTION = {"study-id": 7, "round": 2, "task": "ct-sinogram-lesion-v1", "local-epochs": 3, "lr": 0.01,
               "batch-size": 8, "proximal-mu": 0.0}
COMMITMENT = {"hospital": "0x" + "ab" * 20, "cohort-root": "0x" + "11" * 32, "cohort-count": 40,
              "synthetic-count": 40, "update-hash": "0x" + "22" * 32, "tx": "0x" + "33" * 32}


def test_an_instruction_has_the_keys_on_the_wire() -> None:
    instruction = TrainInstruction.from_config(INSTRUCTION)
    assert (instruction.study_id, instruction.round, instruction.local_epochs, instruction.batch_size) == (7, 2, 3, 8)
    assert instruction.clipping_norm is None
    assert instruction.to_config() == INSTRUCTION


def test_the_clipping_norm_travels_under_flowers_own_key() -> None:
    # Flower's fixedclipping_mod reads "clipping_norm" from the message's config record.
    clipped = TrainInstruction.from_config({**INSTRUCTION, "clipping_norm": 1.5})
    assert clipped.clipping_norm == 1.5
    assert clipped.to_config()["clipping_norm"] == 1.5


def test_a_commitment_has_the_keys_on_the_wire() -> None:
    commitment = Commitment.from_config(COMMITMENT)
    assert commitment.cohort_count == 40
    assert commitment.update_hash == "0x" + "22" * 32
    assert commitment.to_config() == COMMITMENT


def test_the_anchoring_mod_adds_hash_and_transaction_to_what_the_handler_committed() -> None:
    handler = {k: COMMITMENT[k] for k in ("hospital", "cohort-root", "cohort-count", "synthetic-count")}
    anchored = Commitment.from_config(handler).anchored(bytes.fromhex("22" * 32), "0x" + "33" * 32)
    assert anchored.to_config() == COMMITMENT


@pytest.mark.parametrize("key", sorted(INSTRUCTION))
def test_an_instruction_without_a_key_is_refused_naming_it(key: str) -> None:
    with pytest.raises(ProtocolError, match=f"lacks '{key}'"):
        TrainInstruction.from_config({k: v for k, v in INSTRUCTION.items() if k != key})


@pytest.mark.parametrize(("key", "value"), [("round", "2"), ("round", 2.0), ("round", True), ("lr", "0.01"),
                                            ("task", 5), ("local-epochs", None)])
def test_a_value_of_another_type_is_refused_naming_key_and_value(key: str, value: object) -> None:
    with pytest.raises(ProtocolError, match=f"'{key}' is {value!r}"):
        TrainInstruction.from_config({**INSTRUCTION, key: value})


def test_a_whole_number_is_taken_where_a_float_is_expected() -> None:
    assert TrainInstruction.from_config({**INSTRUCTION, "lr": 1}).lr == 1.0


@pytest.mark.parametrize("key", ["hospital", "cohort-root", "cohort-count"])
def test_a_commitment_must_name_hospital_and_cohort(key: str) -> None:
    with pytest.raises(ProtocolError, match=f"lacks '{key}'"):
        Commitment.from_config({k: v for k, v in COMMITMENT.items() if k != key})


def test_a_commitment_from_a_node_that_did_not_anchor_lacks_hash_and_transaction() -> None:
    bare = Commitment.from_config({k: COMMITMENT[k] for k in ("hospital", "cohort-root", "cohort-count")})
    assert (bare.synthetic_count, bare.update_hash, bare.tx) == (None, None, None)
    assert set(bare.to_config()) == {"hospital", "cohort-root", "cohort-count"}


def test_timings_travel_as_seconds_metrics_beside_other_metrics() -> None:
    metrics = {**timing_metrics({"train": 2.5, "node": 3}), "train-loss": 0.4, "cohort-count": 40}
    assert metrics["train-seconds"] == 2.5
    assert metrics["node-seconds"] == 3.0
    assert read_timings(metrics) == {"train": 2.5, "node": 3.0}
