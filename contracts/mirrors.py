"""Python mirrors of the contracts' events and structs, filled from ABI-decoded values by name.

A mirror is a dataclass whose fields are the snake_case names of the ABI parameters (an event's
inputs, a struct's components), in the same order. Each value is converted by its ABI type and
the field's annotation, not guessed from its name:

=================  ==========================  =================================================
ABI type           annotation                  value
=================  ==========================  =================================================
``address``        ``str``                     checksummed address
``bool``           ``bool``                    as is
``bytes32``        ``bytes``                   the raw bytes
``bytes``          ``bytes``                   the raw bytes (e.g. a custom error's revert data)
``bytesN``, N<32   ``str``                     ASCII text, trailing zero bytes dropped
``uintN``/``intN`` ``int``, an IntEnum/IntFlag the integer, or that enum's member
``T[]``            ``tuple[X, ...]``           each element as ``T`` to ``X``
=================  ==========================  =================================================

:func:`mismatches` compares a mirror with the ABI (tests/contracts/test_abi_mirrors.py runs it
for every event and struct the artifacts declare), so a contract change that the mirror does
not follow fails the tests instead of making a mined transaction's receipt fail to decode.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping, Sequence
from enum import IntEnum, IntFlag
from typing import Any, TypeVar

from eth_utils.address import to_checksum_address

from contracts.artifacts import load_artifact
from contracts.errors import ChainError

__all__ = ["MirrorError", "build", "function_outputs", "mismatches", "snake", "to_python"]

T = TypeVar("T")
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")
_BYTES = re.compile(r"^bytes(\d+)$")
_INT = re.compile(r"^u?int\d*$")


class MirrorError(ChainError, TypeError):
    """ABI values that do not fit their Python mirror (the contract changed and the mirror did not)."""


def snake(name: str) -> str:
    """``consentId`` -> ``consent_id``."""
    return _CAMEL.sub("_", name).lower()


_HINTS: dict[type, dict[str, Any]] = {}  # per mirror class: its annotations, evaluated once
_MIRRORING: set[tuple[type, tuple[tuple[str, str], ...], frozenset[str]]] = set()  # checked (class, ABI) pairs


def _hints(cls: Any) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def to_python(param: Mapping[str, Any], target: Any, value: Any) -> Any:
    """Convert the ABI-decoded ``value`` of parameter ``param`` (its ``type``) to annotation ``target``.

    ``target`` ``Any`` keeps the ABI's natural Python type (bytes, checksummed addresses, ints).

    Raises:
        MirrorError: the ABI type cannot become ``target``.
    """
    abi_type = str(param["type"])
    if abi_type.endswith("[]"):
        element = _element(target, abi_type)
        return tuple(to_python({**param, "type": abi_type[:-2]}, element, v) for v in value)
    if abi_type == "address" and target in (str, Any):
        return to_checksum_address(value)
    if abi_type == "bool" and target in (bool, Any):
        return bool(value)
    if abi_type == "bytes" and target in (bytes, Any):
        return bytes(value)
    if match := _BYTES.match(abi_type):
        if target is str and int(match.group(1)) < 32:
            return bytes(value).rstrip(b"\0").decode("ascii", errors="replace")
        if target in (bytes, Any):
            return bytes(value)
    if _INT.match(abi_type):
        if isinstance(target, type) and issubclass(target, (IntEnum, IntFlag)):
            return target(value)
        if target in (int, Any):
            return int(value)
    raise MirrorError(f"ABI parameter {param.get('name')!r} of type {abi_type} cannot become {target!r}")


def _element(target: Any, abi_type: str) -> Any:
    if target is Any:
        return Any
    args = typing.get_args(target)
    if typing.get_origin(target) is tuple and len(args) == 2 and args[1] is Ellipsis:
        return args[0]
    raise MirrorError(f"an ABI array {abi_type} needs a tuple[X, ...] field, not {target!r}")


def _fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def build(cls: type[T], params: Sequence[Mapping[str, Any]], values: Sequence[Any] | Mapping[str, Any],
          **extra: Any) -> T:
    """An instance of mirror ``cls`` from ABI ``params`` and their decoded ``values`` (by position or name).

    ``extra`` gives the fields that do not come from the ABI (where an event was emitted, the id a
    struct was read under).

    Raises:
        MirrorError: the parameters and the mirror's fields differ, or a value does not fit.
    """
    key = (cls, tuple((str(p["name"]), str(p["type"])) for p in params), frozenset(extra))
    if key not in _MIRRORING:
        if problems := mismatches(cls, params, set(extra)):
            raise MirrorError(f"{cls.__name__} does not mirror the ABI: {'; '.join(problems)}")
        _MIRRORING.add(key)
    hints = _hints(cls)
    by_name = values if isinstance(values, Mapping) else {p["name"]: v for p, v in zip(params, values, strict=True)}
    converted = {snake(p["name"]): to_python(p, hints[snake(p["name"])], by_name[p["name"]]) for p in params}
    return cls(**extra, **converted)


def mismatches(cls: type, params: Sequence[Mapping[str, Any]], others: set[str] | frozenset[str] = frozenset()
               ) -> list[str]:
    """How mirror ``cls`` differs from ABI ``params`` (empty: it mirrors them).

    ``others`` are fields of ``cls`` that do not come from the ABI; the rest must be the
    parameters' snake_case names in order, each annotated with a type its ABI type converts to.
    """
    names = [f for f in _fields(cls) if f not in others]
    wanted = [snake(str(p["name"])) for p in params]
    if names != wanted:
        return [f"fields {names} but the ABI has {wanted}"]
    hints = _hints(cls)
    out = []
    for param in params:
        target = hints[snake(str(param["name"]))]
        if not _fits(str(param["type"]), target):
            out.append(f"{snake(str(param['name']))}: {target!r} for ABI type {param['type']}")
    return out


def _fits(abi_type: str, target: Any) -> bool:
    if abi_type.endswith("[]"):
        try:
            return _fits(abi_type[:-2], _element(target, abi_type))
        except MirrorError:
            return False
    if abi_type == "address":
        return target is str
    if abi_type == "bool":
        return target is bool
    if abi_type == "bytes":
        return target is bytes
    if match := _BYTES.match(abi_type):
        return target is bytes or (target is str and int(match.group(1)) < 32)
    if _INT.match(abi_type):
        return target is int or (isinstance(target, type) and issubclass(target, (IntEnum, IntFlag)))
    return False


def function_outputs(contract: str, function: str) -> list[dict[str, Any]]:
    """The output parameters of ``contract.function`` in the artifact's ABI (a struct's components
    when the function returns one struct).

    Raises:
        MirrorError: the ABI has no such function, or more than one.
    """
    found = [item for item in load_artifact(contract).abi
             if item.get("type") == "function" and item.get("name") == function]
    if len(found) != 1:
        raise MirrorError(f"{contract} has {len(found)} functions named {function!r} in its ABI, expected one")
    outputs: list[dict[str, Any]] = list(found[0]["outputs"])
    if len(outputs) == 1 and outputs[0]["type"] == "tuple":
        return list(outputs[0]["components"])
    return outputs
