"""Decode event logs by the ABI of the artifacts, with the auditor's own code (eth_abi only)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from audit.artifacts import Artifact
from audit.errors import ArtifactError, ReplayError
from audit.rpc import ChainReader, Log


@dataclass(frozen=True)
class Event:
    """A decoded event: its name, arguments by ABI name, and where it was emitted."""

    name: str
    args: dict[str, Any]
    block: int
    log_index: int
    tx_hash: str


def canonical_type(param: dict[str, Any]) -> str:
    """Return the canonical ABI type of one ABI parameter, e.g. ``(address,uint8)[]`` for a tuple array."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        return "(" + ",".join(canonical_type(c) for c in param["components"]) + ")" + kind.removeprefix("tuple")
    return kind


def event_topic(entry: dict[str, Any]) -> bytes:
    """Return topic 0 of an ABI event entry: keccak256 of its signature."""
    return keccak(text=f"{entry['name']}({','.join(canonical_type(p) for p in entry['inputs'])})")


def _is_static(kind: str) -> bool:
    return not (kind in ("string", "bytes") or kind.endswith("]") or kind.startswith("("))


class EventDecoder:
    """Decode logs of the events ``names`` of one contract.

    Parameters:
        artifact: the contract's artifact (its ABI names and types the fields).
        names: the events to decode.

    Raises:
        ArtifactError: the ABI lacks one of the events.
    """

    def __init__(self, artifact: Artifact, names: Iterable[str]) -> None:
        self.contract = artifact.name
        self._events = {event_topic(entry): entry for entry in map(artifact.event, names)}

    @property
    def topics(self) -> list[bytes]:
        """Topic 0 of each event decoded, for a log filter."""
        return list(self._events)

    def decode(self, log: Log) -> Event:
        """Decode one log; an indexed field of a dynamic type is left as its 32-byte hash.

        Raises:
            ReplayError: the log is not one of the events, or its topics or data do not fit the ABI.
        """
        entry = self._events.get(log.topics[0]) if log.topics else None
        if entry is None:
            raise ReplayError(f"log {log.log_index} of block {log.block} ({log.tx_hash}) is not an event of "
                              f"{self.contract} this decoder reads")
        indexed = [p for p in entry["inputs"] if p.get("indexed")]
        plain = [p for p in entry["inputs"] if not p.get("indexed")]
        if len(log.topics) != 1 + len(indexed):
            raise ReplayError(f"{entry['name']} in block {log.block} has {len(log.topics) - 1} indexed topics, "
                              f"its ABI {len(indexed)}")
        try:
            args: dict[str, Any] = {}
            for param, topic in zip(indexed, log.topics[1:], strict=True):
                kind = canonical_type(param)
                args[param["name"]] = decode([kind], topic)[0] if _is_static(kind) else topic
            values = decode([canonical_type(p) for p in plain], log.data)
        except (DecodingError, ValueError) as exc:  # ValueError: an ABI type eth_abi does not know
            raise ReplayError(f"{entry['name']} in block {log.block} ({log.tx_hash}) does not decode by "
                              f"the ABI: {exc}") from exc
        args.update(zip((p["name"] for p in plain), values, strict=True))
        return Event(entry["name"], args, log.block, log.log_index, log.tx_hash)


def read_events(reader: ChainReader, artifact: Artifact, address: str, names: Iterable[str],
                from_block: int, to_block: int) -> list[Event]:
    """Read and decode the events ``names`` that ``address`` emitted in ``from_block``..``to_block``.

    Returns:
        The events in chain order.

    Raises:
        ArtifactError: the ABI lacks one of the events.
        ReplayError: a log does not decode by the ABI.
        RpcError: the endpoint failed.
    """
    decoder = EventDecoder(artifact, names)
    if not decoder.topics:
        raise ArtifactError("no event names given to read")
    return [decoder.decode(log) for log in reader.logs(address, [decoder.topics], from_block, to_block)]
