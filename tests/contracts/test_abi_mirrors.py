"""The Python mirrors of the contracts' events and structs match the ABI artifacts, and drift is caught."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils.address import to_checksum_address

from contracts.artifacts import CONTRACT_NAMES, load_artifact
from contracts.consent import ConsentRecord
from contracts.datasets import DatasetRecord
from contracts.datause import Kind, Purpose
from contracts.enums import StudyStatus
from contracts.events import EVENT_TYPES, ChainEvent
from contracts.mirrors import MirrorError, build, function_outputs, mismatches, to_python
from contracts.studies import StudyRecord

WHERE = frozenset({"contract", "address", "block_number", "tx_hash", "log_index"})
#: Events of the ABI decoded as OtherEvent, and why they need no record of their own.
WITHOUT_RECORD = {
    "EIP712DomainChanged": "OpenZeppelin's EIP-712 event for a changed signing domain; ConsentRegistry's never changes",
}
#: Each struct a view returns, and its mirror (fields besides the ABI's: the id it was read under).
STRUCTS = [
    ("StudyRegistry", "study", StudyRecord, {"study_id"}),
    ("DatasetRegistry", "dataset", DatasetRecord, {"dataset_id"}),
    ("ConsentRegistry", "consentOf", ConsentRecord, set()),
]


def _abi_events() -> dict[str, dict[str, Any]]:
    return {item["name"]: item for contract in CONTRACT_NAMES for item in load_artifact(contract).abi
            if item["type"] == "event"}


@pytest.mark.parametrize("event", sorted(_abi_events()))
def test_every_event_of_the_abi_has_a_record_that_mirrors_it(event: str) -> None:
    abi = _abi_events()[event]
    if event in WITHOUT_RECORD:
        assert event not in EVENT_TYPES
        return
    assert event in EVENT_TYPES, f"{event} is in the ABI but has no record in contracts/events.py"
    assert mismatches(EVENT_TYPES[event], abi["inputs"], WHERE) == []


def test_every_record_is_an_event_of_the_abi() -> None:
    assert set(EVENT_TYPES) - set(_abi_events()) == set()


@pytest.mark.parametrize(("contract", "function", "mirror", "others"), STRUCTS,
                         ids=[f"{c}.{f}" for c, f, _, _ in STRUCTS])
def test_every_struct_a_view_returns_has_a_mirror(contract: str, function: str, mirror: type,
                                                  others: set[str]) -> None:
    assert mismatches(mirror, function_outputs(contract, function), others) == []


def test_every_struct_of_the_abi_is_listed() -> None:
    returning = {(contract, item["name"]) for contract in CONTRACT_NAMES for item in load_artifact(contract).abi
                 if item["type"] == "function" and len(item["outputs"]) == 1 and item["outputs"][0]["type"] == "tuple"}
    assert returning == {(c, f) for c, f, _, _ in STRUCTS}


# ---------------------------------------------------------------- drift is caught, values convert by type


@dataclass(frozen=True)
class _Granted(ChainEvent):
    patient: str
    purpose: Purpose
    kinds: Kind
    hospitals: tuple[str, ...]
    modality: str


_INPUTS = [{"name": "patient", "type": "address"}, {"name": "purpose", "type": "uint8"},
           {"name": "kinds", "type": "uint8"}, {"name": "hospitals", "type": "address[]"},
           {"name": "modality", "type": "bytes16"}]
_WHERE = {"contract": "C", "address": "0x" + "00" * 20, "block_number": 1, "tx_hash": "0x", "log_index": 0}


def test_values_convert_by_abi_type_and_annotation() -> None:
    record = build(_Granted, _INPUTS, ["0x" + "ab" * 20, 1, 3, ["0x" + "cd" * 20], b"CT".ljust(16, b"\0")], **_WHERE)
    assert record.patient == to_checksum_address("0x" + "ab" * 20)
    assert record.purpose is Purpose(1)
    assert record.kinds == Kind(3)
    assert record.hospitals == (to_checksum_address("0x" + "cd" * 20),)
    assert record.modality == "CT"


def test_a_contract_change_the_mirror_did_not_follow_is_refused() -> None:
    added = [*_INPUTS, {"name": "studyId", "type": "uint256"}]
    with pytest.raises(MirrorError, match=r"_Granted does not mirror the ABI: fields .* but the ABI has"):
        build(_Granted, added, [None] * len(added), **_WHERE)
    swapped = [_INPUTS[0], _INPUTS[2], _INPUTS[1], *_INPUTS[3:]]
    assert mismatches(_Granted, swapped, WHERE) != []
    retyped = [{"name": "patient", "type": "bytes32"}, *_INPUTS[1:]]
    assert mismatches(_Granted, retyped, WHERE) == ["patient: <class 'str'> for ABI type bytes32"]


def test_an_enum_field_takes_only_its_values() -> None:
    assert to_python({"name": "status", "type": "uint8"}, StudyStatus, 3) is StudyStatus.RUNNING
    with pytest.raises(ValueError, match="is not a valid StudyStatus"):
        to_python({"name": "status", "type": "uint8"}, StudyStatus, 9)
    with pytest.raises(MirrorError, match="cannot become"):
        to_python({"name": "root", "type": "bytes32"}, int, b"\0" * 32)
