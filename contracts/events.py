"""Typed records of the events the MeTAI contracts emit, and readers that decode them.

Each event becomes a frozen dataclass with snake_case fields, checksummed addresses, ``bytes``
for hashes and the :mod:`contracts.datause` enums for kinds and purposes, plus where it was
emitted (contract, block, transaction, log index); the values are converted by their ABI types
and the fields' annotations (contracts/mirrors.py), and a test checks every record against the
ABI. ``describe()`` renders it for people.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from functools import cache
from typing import Any, ClassVar, Protocol

from eth_abi.abi import decode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from contracts.artifacts import load_artifact
from contracts.datause import NO_EXPIRY, ZERO_ADDRESS, Kind, Purpose
from contracts.enums import Role
from contracts.errors import ContractRevert, UnknownRevert
from contracts.mirrors import build, snake, to_python
from contracts.reverts import decode_revert


class LogSource(Protocol):
    """What the readers below need of a chain (``contracts.chain.Chain`` is one): its web3
    connection, its height, and which known contract an address holds."""

    @property
    def w3(self) -> Any: ...

    @property
    def block_number(self) -> int: ...

    def contract_name(self, address: str) -> str | None: ...

ROLE_NAMES = {role.value: role.name for role in Role}


def short(value: str | bytes) -> str:
    """Abbreviate an address or hash for display: ``0x1234…abcd``."""
    text = value if isinstance(value, str) else "0x" + value.hex()
    return text if len(text) <= 14 else f"{text[:6]}…{text[-4:]}"


def _kinds(k: Kind) -> str:
    return "|".join(m.name or "" for m in Kind if m in k) or "none"


def _purpose(p: Purpose, disease: int) -> str:
    return f"DS:{disease}" if p == Purpose.DS else p.name


def _when(ts: int) -> str:
    if ts == NO_EXPIRY:
        return "no expiry"
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class ChainEvent:
    """Where an event was emitted; subclasses add its arguments."""

    name: ClassVar[str] = "ChainEvent"
    contract: str
    address: str
    block_number: int
    tx_hash: str
    log_index: int

    def describe(self) -> str:
        """One line for people: what happened, with the values that matter."""
        args = ", ".join(
            f"{f.name}={v}" for f in fields(self)[5:] for v in [getattr(self, f.name)]
        )
        return f"{self.name}({args})"


@dataclass(frozen=True)
class ConsentGranted(ChainEvent):
    name: ClassVar[str] = "ConsentGranted"
    patient: str
    consent_id: bytes
    hospital: str
    purpose: Purpose
    disease: int
    study_id: int
    kinds: Kind
    expires_at: int

    def describe(self) -> str:
        where = "any hospital" if self.hospital == ZERO_ADDRESS else f"hospital {short(self.hospital)}"
        study = "any study" if self.study_id == 0 else f"study {self.study_id}"
        return (
            f"patient {short(self.patient)} granted consent {short(self.consent_id)}: "
            f"{_kinds(self.kinds)} for {_purpose(self.purpose, self.disease)}, {where}, {study}, "
            f"until {_when(self.expires_at)}"
        )


@dataclass(frozen=True)
class ConsentRevoked(ChainEvent):
    name: ClassVar[str] = "ConsentRevoked"
    patient: str
    consent_id: bytes

    def describe(self) -> str:
        return f"patient {short(self.patient)} revoked consent {short(self.consent_id)}"


@dataclass(frozen=True)
class SignaturesCancelled(ChainEvent):
    name: ClassVar[str] = "SignaturesCancelled"
    patient: str
    from_nonce: int
    to_nonce: int

    def describe(self) -> str:
        last = self.to_nonce - 1
        nonces = f"nonce {last}" if last == self.from_nonce else f"nonces {self.from_nonce} to {last}"
        return f"patient {short(self.patient)} cancelled any signature with {nonces}"


@dataclass(frozen=True)
class ConsentRelayFailed(ChainEvent):
    name: ClassVar[str] = "ConsentRelayFailed"
    patient: str
    nonce: int
    index: int
    reason: bytes

    @property
    def failure(self) -> ContractRevert | UnknownRevert:
        """The refusal ``reason`` decoded: the custom error's name and arguments."""
        return decode_revert(self.reason, self.contract)

    def describe(self) -> str:
        return (
            f"batch item {self.index}, patient {short(self.patient)}'s signature with nonce {self.nonce}, "
            f"was refused: {self.failure}"
        )


@dataclass(frozen=True)
class DatasetRegistered(ChainEvent):
    name: ClassVar[str] = "DatasetRegistered"
    dataset_id: int
    hospital: str
    merkle_root: bytes
    record_count: int
    kinds: Kind
    modality: str
    synthetic: bool
    parents: tuple[int, ...]
    transform_hash: bytes

    def describe(self) -> str:
        origin = f", derived from {list(self.parents)}" if self.parents else ""
        nature = "synthetic" if self.synthetic else "real"
        return (
            f"hospital {short(self.hospital)} registered dataset {self.dataset_id}: "
            f"{self.record_count} {nature} {self.modality} records ({_kinds(self.kinds)}), "
            f"root {short(self.merkle_root)}{origin}"
        )


@dataclass(frozen=True)
class StudyRequested(ChainEvent):
    name: ClassVar[str] = "StudyRequested"
    study_id: int
    researcher: str
    purpose: Purpose
    disease: int
    kinds: Kind
    hospitals: tuple[str, ...]
    task_code_hash: bytes
    rounds: int
    privacy_budget: int

    def describe(self) -> str:
        return (
            f"researcher {short(self.researcher)} requested study {self.study_id}: "
            f"{_kinds(self.kinds)} for {_purpose(self.purpose, self.disease)}, {self.rounds} rounds, "
            f"hospitals {', '.join(short(h) for h in self.hospitals)}"
        )


@dataclass(frozen=True)
class StudyApproved(ChainEvent):
    name: ClassVar[str] = "StudyApproved"
    study_id: int
    hospital: str

    def describe(self) -> str:
        return f"hospital {short(self.hospital)} approved study {self.study_id}"


@dataclass(frozen=True)
class StudyDeclined(ChainEvent):
    name: ClassVar[str] = "StudyDeclined"
    study_id: int
    hospital: str

    def describe(self) -> str:
        return f"hospital {short(self.hospital)} declined study {self.study_id}"


@dataclass(frozen=True)
class StudyWithdrawn(ChainEvent):
    name: ClassVar[str] = "StudyWithdrawn"
    study_id: int
    researcher: str

    def describe(self) -> str:
        return f"researcher {short(self.researcher)} withdrew study {self.study_id}"


@dataclass(frozen=True)
class StudyStarted(ChainEvent):
    name: ClassVar[str] = "StudyStarted"
    study_id: int
    coordinator: str

    def describe(self) -> str:
        return f"coordinator {short(self.coordinator)} started study {self.study_id}"


@dataclass(frozen=True)
class ContributionRecorded(ChainEvent):
    name: ClassVar[str] = "ContributionRecorded"
    study_id: int
    round: int
    hospital: str
    cohort_root: bytes
    cohort_count: int
    cohort_block: int
    dataset_ids: tuple[int, ...]
    update_hash: bytes

    def describe(self) -> str:
        datasets = ", ".join(str(d) for d in self.dataset_ids)
        return (
            f"hospital {short(self.hospital)} contributed to study {self.study_id} round {self.round}: "
            f"{self.cohort_count} records permitted as of block {self.cohort_block}, from dataset(s) {datasets}, "
            f"cohort {short(self.cohort_root)}, update {short(self.update_hash)}"
        )


@dataclass(frozen=True)
class RoundRecorded(ChainEvent):
    name: ClassVar[str] = "RoundRecorded"
    study_id: int
    round: int
    model_hash: bytes
    contributors: tuple[str, ...]
    privacy_spent: int

    def describe(self) -> str:
        return (
            f"study {self.study_id} round {self.round} aggregated into model {short(self.model_hash)} "
            f"from {len(self.contributors)} hospitals (privacy spent {self.privacy_spent / 1000:g})"
        )


@dataclass(frozen=True)
class StudyCompleted(ChainEvent):
    name: ClassVar[str] = "StudyCompleted"
    study_id: int
    final_model_hash: bytes
    lineage_hash: bytes
    rounds: int

    def describe(self) -> str:
        return (
            f"study {self.study_id} completed after {self.rounds} rounds, "
            f"final model {short(self.final_model_hash)}, lineage bundle {short(self.lineage_hash)}"
        )


@dataclass(frozen=True)
class RoleGranted(ChainEvent):
    name: ClassVar[str] = "RoleGranted"
    role: bytes
    account: str
    sender: str

    def describe(self) -> str:
        role = ROLE_NAMES.get(self.role, short(self.role))
        return f"{short(self.sender)} granted role {role} to {short(self.account)}"


@dataclass(frozen=True)
class RoleRevoked(ChainEvent):
    name: ClassVar[str] = "RoleRevoked"
    role: bytes
    account: str
    sender: str

    def describe(self) -> str:
        role = ROLE_NAMES.get(self.role, short(self.role))
        return f"{short(self.sender)} revoked role {role} from {short(self.account)}"


@dataclass(frozen=True)
class RoleAdminChanged(ChainEvent):
    name: ClassVar[str] = "RoleAdminChanged"
    role: bytes
    previous_admin_role: bytes
    new_admin_role: bytes


@dataclass(frozen=True)
class DefaultAdminTransferScheduled(ChainEvent):
    name: ClassVar[str] = "DefaultAdminTransferScheduled"
    new_admin: str
    accept_schedule: int

    def describe(self) -> str:
        return (f"the consortium admin seat is to pass to {short(self.new_admin)}, who may accept it from "
                f"{_when(self.accept_schedule)}")


@dataclass(frozen=True)
class DefaultAdminTransferCanceled(ChainEvent):
    name: ClassVar[str] = "DefaultAdminTransferCanceled"

    def describe(self) -> str:
        return "the pending transfer of the consortium admin seat was cancelled"


@dataclass(frozen=True)
class DefaultAdminDelayChangeScheduled(ChainEvent):
    name: ClassVar[str] = "DefaultAdminDelayChangeScheduled"
    new_delay: int
    effect_schedule: int

    def describe(self) -> str:
        return (f"the admin transfer delay is to become {self.new_delay} s from {_when(self.effect_schedule)}")


@dataclass(frozen=True)
class DefaultAdminDelayChangeCanceled(ChainEvent):
    name: ClassVar[str] = "DefaultAdminDelayChangeCanceled"

    def describe(self) -> str:
        return "the pending change of the admin transfer delay was cancelled"


@dataclass(frozen=True)
class OtherEvent(ChainEvent):
    """An event of a known contract that has no dedicated record type."""

    name: ClassVar[str] = "OtherEvent"
    event: str
    args: tuple[tuple[str, Any], ...]

    def describe(self) -> str:
        return f"{self.event}({', '.join(f'{k}={v}' for k, v in self.args)})"


EVENT_TYPES: dict[str, type[ChainEvent]] = {
    cls.name: cls
    for cls in (
        ConsentGranted,
        ConsentRevoked,
        SignaturesCancelled,
        ConsentRelayFailed,
        DatasetRegistered,
        StudyRequested,
        StudyApproved,
        StudyDeclined,
        StudyWithdrawn,
        StudyStarted,
        ContributionRecorded,
        RoundRecorded,
        StudyCompleted,
        RoleGranted,
        RoleRevoked,
        RoleAdminChanged,
        DefaultAdminTransferScheduled,
        DefaultAdminTransferCanceled,
        DefaultAdminDelayChangeScheduled,
        DefaultAdminDelayChangeCanceled,
    )
}

def _canonical(arg: dict[str, Any]) -> str:
    return str(arg["type"])


@cache
def _event_abis(contract: str) -> dict[bytes, dict[str, Any]]:
    out = {}
    for item in load_artifact(contract).abi:
        if item["type"] == "event":
            sig = f"{item['name']}({','.join(_canonical(a) for a in item['inputs'])})"
            out[keccak(text=sig)] = item
    return out


def _decode_args(abi: dict[str, Any], log: Any) -> dict[str, Any]:
    """The arguments of event ``abi`` in ``log``, by name, as eth_abi decodes them.

    Indexed arguments come from the topics after the first, the others from the data. An indexed
    argument of a dynamic type is kept as its topic, the hash of its value, as Solidity logs it.
    Decoded here rather than by web3's ``process_log``, which takes about ten times as long: a
    batch relay's receipt holds 200 events.
    """
    inputs = abi["inputs"]
    plain = [p for p in inputs if not p["indexed"]]
    args = dict(zip((p["name"] for p in plain), decode([_canonical(p) for p in plain], bytes(log["data"])),
                    strict=True))
    indexed = [p for p in inputs if p["indexed"]]
    for param, topic in zip(indexed, log["topics"][1:], strict=True):
        dynamic = param["type"] in ("string", "bytes") or param["type"].endswith("]")
        args[param["name"]] = bytes(topic) if dynamic else decode([_canonical(param)], bytes(topic))[0]
    return args


def decode_logs(chain: LogSource, logs: Iterable[Any]) -> list[ChainEvent]:
    """Decode the logs emitted by known MeTAI contracts; logs of other contracts are skipped."""
    records: list[ChainEvent] = []
    for log in logs:
        contract = chain.contract_name(log["address"])
        if contract is None or not log["topics"]:
            continue
        abi = _event_abis(contract).get(bytes(log["topics"][0]))
        if abi is None:
            continue
        args = _decode_args(abi, log)
        where: dict[str, Any] = {
            "contract": contract,
            "address": to_checksum_address(log["address"]),
            "block_number": int(log["blockNumber"]),
            "tx_hash": HexBytes(log["transactionHash"]).to_0x_hex(),
            "log_index": int(log["logIndex"]),
        }
        cls = EVENT_TYPES.get(abi["name"])
        if cls is None:
            other = tuple((snake(p["name"]), to_python(p, Any, args[p["name"]])) for p in abi["inputs"])
            records.append(OtherEvent(**where, event=abi["name"], args=other))
        else:
            records.append(build(cls, abi["inputs"], args, **where))
    return records


def event_topic(contract: str, event: str) -> str:
    """The topic (keccak of the signature, 0x hex) of ``event`` of artifact ``contract``, for log filters."""
    for topic, abi in _event_abis(contract).items():
        if abi["name"] == event:
            return "0x" + topic.hex()
    raise LookupError(f"{contract} has no event {event}")


def address_topic(address: str) -> str:
    """An address as an indexed-argument topic (left-padded to 32 bytes), for log filters."""
    return "0x" + bytes.fromhex(to_checksum_address(address)[2:]).rjust(32, b"\0").hex()


def read_events(
    chain: LogSource,
    addresses: Sequence[str],
    *,
    from_block: int = 0,
    to_block: int | None = None,
    chunk: int = 5_000,
    topics: Sequence[str | Sequence[str] | None] | None = None,
) -> list[ChainEvent]:
    """Read and decode every event the contracts at ``addresses`` emitted, in chain order.

    The range is queried in chunks of ``chunk`` blocks, since many endpoints cap eth_getLogs.
    ``topics`` filters as eth_getLogs does: position by position, a topic, a list of
    alternatives, or None for any (see :func:`event_topic` and :func:`address_topic`).
    """
    last = chain.block_number if to_block is None else to_block
    out: list[ChainEvent] = []
    start = from_block
    while start <= last:
        end = min(start + chunk - 1, last)
        query: dict[str, Any] = {"address": [to_checksum_address(a) for a in addresses], "fromBlock": start,
                                 "toBlock": end}
        if topics is not None:
            query["topics"] = list(topics)
        logs = chain.w3.eth.get_logs(query)
        out.extend(decode_logs(chain, logs))
        start = end + 1
    return sorted(out, key=lambda e: (e.block_number, e.log_index))
