"""Turn revert data into :class:`~contracts.errors.ContractRevert` exceptions.

Every custom error declared in any artifact's ABI is indexed by its 4-byte selector, so a
revert from any MeTAI contract (or an OpenZeppelin error it raises) decodes to its name and
arguments. Each error name also gets its own exception class, so callers may write
``except revert_class("ConsentRegistryInvalidSigner")`` or match on ``exc.error``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from contracts.artifacts import CONTRACT_NAMES, load_artifact
from contracts.enums import ENUMS_BY_SOLIDITY_NAME
from contracts.errors import ContractRevert, UnknownRevert

_PANIC_SELECTOR = bytes.fromhex("4e487b71")
_ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")
_PANIC_REASONS = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}


@dataclass(frozen=True)
class _ErrorAbi:
    name: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    enums: tuple[str | None, ...]  # internalType of enum arguments, else None


def _canonical_type(arg: dict[str, Any]) -> str:
    if arg["type"].startswith("tuple"):
        inner = ",".join(_canonical_type(c) for c in arg["components"])
        return f"({inner}){arg['type'][5:]}"
    return str(arg["type"])


@cache
def _error_index() -> dict[bytes, _ErrorAbi]:
    index: dict[bytes, _ErrorAbi] = {}
    for contract in CONTRACT_NAMES:
        for item in load_artifact(contract).abi:
            if item["type"] != "error":
                continue
            types = tuple(_canonical_type(a) for a in item["inputs"])
            selector = keccak(text=f"{item['name']}({','.join(types)})")[:4]
            enums = tuple(
                a.get("internalType") if str(a.get("internalType", "")).startswith("enum ") else None
                for a in item["inputs"]
            )
            index[selector] = _ErrorAbi(
                item["name"], tuple(a["name"] for a in item["inputs"]), types, enums
            )
    return index


@cache
def revert_class(error: str) -> type[ContractRevert]:
    """Return the exception class raised for custom error ``error`` (a ContractRevert subclass)."""
    return type(error, (ContractRevert,), {"__module__": __name__})


def known_errors() -> list[str]:
    """Names of every custom error the artifacts declare."""
    return sorted({e.name for e in _error_index().values()})


def _convert(value: Any, abi_type: str, enum: str | None) -> Any:
    if abi_type == "address":
        return to_checksum_address(value)
    if enum is not None:
        python_enum = ENUMS_BY_SOLIDITY_NAME.get(enum.removeprefix("enum "))
        return python_enum(value) if python_enum is not None else value
    return value


def decode_revert(data: bytes, contract: str | None = None) -> ContractRevert | UnknownRevert:
    """Decode revert ``data`` into an exception (returned, not raised)."""
    selector, payload = data[:4], data[4:]
    if selector == _PANIC_SELECTOR and len(payload) == 32:
        code = int.from_bytes(payload, "big")
        return UnknownRevert(f"panic 0x{code:02x}: {_PANIC_REASONS.get(code, 'unknown')}", data)
    if selector == _ERROR_STRING_SELECTOR:
        (message,) = decode(["string"], payload)
        return UnknownRevert(f"reverted: {message}", data)
    abi = _error_index().get(selector)
    if abi is None:
        shown = "0x" + data.hex() if data else "no data"
        return UnknownRevert(f"reverted with an unknown error ({shown})", data)
    values = decode(list(abi.types), payload)
    named = {
        n: _convert(v, t, e) for n, v, t, e in zip(abi.names, values, abi.types, abi.enums, strict=True)
    }
    return revert_class(abi.name)(abi.name, named, contract)
