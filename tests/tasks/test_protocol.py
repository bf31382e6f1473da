"""The round's messages keep the keys nodes and coordinators of this release exchange.

The wire names are written out here on purpose, not taken from tasks.protocol: a node and a
coordinator of different installations must agree on them, so renaming one is a protocol
change this test makes visible.
"""

from __future__ import annotations

import numpy as np
import pytest

from tasks.errors import ProtocolError
from tasks.protocol import (
    Commitment,
    TrainInstruction,
    layout_of,
    pack_weights,
    read_timings,
    timing_metrics,
    unpack_weights,
)

INSTRUCTION = {"study-id": 7, "round": 2, "task": "ct-sinogram-lesion-v1", "local-epochs": 3, "lr": 0.01,
               "batch-size": 8, "proximal-mu": 0.0, "weight-layout": [1, 3, 2, 2, 2]}
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


WEIGHTS = [np.arange(6, dtype=np.float32).reshape(2, 3), np.ones(4, dtype=np.float32), np.float32(7.0).reshape(()),
           np.zeros((0, 5), dtype=np.float32)]


def test_weights_travel_packed_in_one_array_and_come_back_the_same() -> None:
    packed = pack_weights(WEIGHTS)
    assert len(packed) == 1
    assert (packed[0].dtype, packed[0].shape) == (np.float32, (11,))
    layout = layout_of(WEIGHTS)
    assert layout == [2, 2, 3, 1, 4, 0, 2, 0, 5]
    back = unpack_weights(packed, layout)
    assert [(w.shape, w.dtype) for w in back] == [(w.shape, w.dtype) for w in WEIGHTS]
    assert all(np.array_equal(a, b) for a, b in zip(back, WEIGHTS, strict=True))
    back[0][0, 0] = 99  # the unpacked weights are copies, not views of the record's array
    assert packed[0][0] == 0


def test_an_instruction_carries_the_layout() -> None:
    instruction = TrainInstruction.from_config({**INSTRUCTION, "weight-layout": layout_of(WEIGHTS)})
    assert instruction.weight_layout == layout_of(WEIGHTS)


@pytest.mark.parametrize(("arrays", "layout", "message"), [
    ([np.zeros(10, dtype=np.float32)], [2, 2, 3, 1, 4, 0, 2, 0, 5], "holds 10 numbers; the layout's 4 weights take 11"),
    ([np.zeros(11, dtype=np.float64)], [2, 2, 3, 1, 4, 0, 2, 0, 5], "expected one 1-D float32 array"),
    ([np.zeros((11, 1), dtype=np.float32)], [2, 2, 3, 1, 4, 0, 2, 0, 5], "expected one 1-D float32 array"),
    ([np.zeros(6, dtype=np.float32), np.zeros(5, dtype=np.float32)], [2, 2, 3, 1, 5], "expected one 1-D float32"),
    ([np.zeros(6, dtype=np.float32)], [2, 2], "not a list of shapes"),
    ([np.zeros(6, dtype=np.float32)], [2, 2, -3], "not a whole number >= 0"),
    ([np.zeros(6, dtype=np.float32)], [1, True], "not a whole number >= 0"),
    ([np.zeros(6, dtype=np.float32)], [-1, 6], "not a list of shapes"),
])
def test_weights_that_do_not_fit_their_layout_are_refused(arrays: list[np.ndarray], layout: list[object],
                                                          message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        unpack_weights(arrays, layout)


def test_only_float32_weights_are_packed() -> None:
    with pytest.raises(ProtocolError, match="only float32 travels"):
        pack_weights([np.zeros(3, dtype=np.float64)])
