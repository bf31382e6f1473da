"""Revert decoding without a chain: custom errors, panics, strings, unknown data."""

from __future__ import annotations

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from contracts.errors import ContractRevert, UnknownRevert
from contracts.reverts import decode_revert, known_errors, revert_class
from contracts.studies import StudyStatus


def test_custom_error_decodes_with_names_and_enums() -> None:
    selector = keccak(text="StudyRegistryUnexpectedStatus(uint256,uint8,uint8)")[:4]
    exc = decode_revert(selector + encode(["uint256", "uint8", "uint8"], [7, 4, 3]), "StudyRegistry")
    assert isinstance(exc, revert_class("StudyRegistryUnexpectedStatus"))
    assert isinstance(exc, ContractRevert)
    assert exc.values == {"studyId": 7, "status": StudyStatus.COMPLETED, "expected": StudyStatus.RUNNING}
    assert "StudyRegistryUnexpectedStatus(studyId=7" in str(exc)


def test_panic_is_named() -> None:
    data = bytes.fromhex("4e487b71") + (0x11).to_bytes(32, "big")
    exc = decode_revert(data)
    assert isinstance(exc, UnknownRevert)
    assert "arithmetic overflow" in str(exc)


def test_unknown_selector_keeps_raw_data() -> None:
    exc = decode_revert(bytes.fromhex("deadbeef"))
    assert isinstance(exc, UnknownRevert)
    assert exc.data == bytes.fromhex("deadbeef")


def test_known_errors_cover_every_contract() -> None:
    names = known_errors()
    for prefix in ("ConsentRegistry", "DatasetRegistry", "StudyRegistry", "ConsortiumRoles"):
        assert any(n.startswith(prefix) for n in names)
