"""Sign-In with Ethereum (EIP-4361): write, read and verify the message a wallet signs.

The text form follows the ABNF of EIP-4361 line by line, and :func:`parse_message` accepts that
grammar only, naming the line and what it expected when it refuses. Domains and URIs are checked
for RFC 3986's characters and shape, not taken apart component by component. Signatures are
EIP-191 ``personal_sign`` by an externally owned account; contract accounts (EIP-1271) are not
supported. Timestamps are read with any RFC 3339 offset and held and written in UTC with ``Z``;
RFC 3339's leap second (``:60``) is refused, digits of a second past the sixth are dropped.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_keys.exceptions import BadSignature
from eth_utils.address import to_checksum_address

from coordinator.errors import (
    SiweChainMismatch,
    SiweDomainMismatch,
    SiweExpired,
    SiweMalformed,
    SiweNotYetValid,
    SiweSignatureMismatch,
    SiweUriMismatch,
)

#: How far past ``now`` a message's issue time may lie: the wallet's clock may run ahead of ours.
CLOCK_SKEW = timedelta(minutes=1)

_HEADER = " wants you to sign in with your Ethereum account:"
# RFC 3986 character classes, ASCII only.
_UNRESERVED, _SUB_DELIMS, _PCT = r"A-Za-z0-9\-._~", r"!$&'()*+,;=", r"%[0-9A-Fa-f]{2}"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*"
_URI = rf"{_SCHEME}:(?:[{_UNRESERVED}{_SUB_DELIMS}:/?@\[\]]|{_PCT})*(?:#(?:[{_UNRESERVED}{_SUB_DELIMS}:/?@]|{_PCT})*)?"
_RULES: dict[str, tuple[re.Pattern[str], str]] = {name: (re.compile(pattern), expected) for name, pattern, expected in (
    ("scheme", _SCHEME, "an RFC 3986 scheme such as https"),
    ("domain", rf"(?:(?:[{_UNRESERVED}{_SUB_DELIMS}:]|{_PCT})*@)?(?:\[[{_UNRESERVED}{_SUB_DELIMS}:]+\]"
               rf"|(?:[{_UNRESERVED}{_SUB_DELIMS}]|{_PCT})+)(?::[0-9]*)?",
     "an RFC 3986 authority such as example.com or 127.0.0.1:8000"),
    ("address", r"0x[0-9A-Fa-f]{40}", "an address: 0x and 40 hex digits"),
    ("statement", rf"[{_UNRESERVED}{_SUB_DELIMS}:/?#\[\]@ ]*",
     "one line of RFC 3986 reserved and unreserved characters and spaces"),
    ("uri", _URI, "an RFC 3986 URI such as https://example.com/login"),
    ("version", r"1", "1, the only version of EIP-4361"),
    ("chain_id", r"[0-9]{1,78}", "a chain id of at most 78 decimal digits (a uint256) such as 1"),
    ("nonce", r"[A-Za-z0-9]{8,}", "a nonce of at least 8 letters and digits (A-Z, a-z, 0-9)"),
    ("request_id", rf"(?:[{_UNRESERVED}{_SUB_DELIMS}:@]|{_PCT})*", "a request id of RFC 3986 pchar characters"),
    ("resource", _URI, "an RFC 3986 URI such as ipfs://bafy.../"),
)}
_DATE_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
                        r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))")
# (tag, field, required) of the lines after the statement, in the order EIP-4361 gives them.
_FIELD_LINES = (("URI", "uri", True), ("Version", "version", True), ("Chain ID", "chain_id", True),
                ("Nonce", "nonce", True), ("Issued At", "issued_at", True),
                ("Expiration Time", "expiration_time", False), ("Not Before", "not_before", False),
                ("Request ID", "request_id", False))
_TIMES = ("issued_at", "expiration_time", "not_before")
_ORDER = "URI, Version, Chain ID, Nonce, Issued At, Expiration Time, Not Before, Request ID, Resources"


@dataclass(frozen=True, kw_only=True)
class SiweMessage:
    """One EIP-4361 message; the constructor refuses a field the text form cannot carry.

    ``scheme`` is the optional ``https://`` before the domain. Times must be timezone-aware and
    are held in UTC. A ``Resources:`` line is written only when there are resources.
    """

    domain: str
    address: str
    statement: str | None = None
    uri: str
    version: str = "1"
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()
    scheme: str | None = None

    def __post_init__(self) -> None:
        for name in ("scheme", "domain", "address", "statement", "uri", "version", "nonce", "request_id"):
            if (value := getattr(self, name)) is not None:
                _check(name, name, value)
        if type(self.chain_id) is not int:
            raise SiweMalformed(f"chain_id {self.chain_id!r} is a {type(self.chain_id).__name__}, expected an int")
        _check("chain_id", "chain_id", str(self.chain_id))
        for name in _TIMES:
            if (moment := getattr(self, name)) is not None:
                if moment.utcoffset() is None:
                    raise SiweMalformed(f"{name} {moment} has no time zone; give an aware datetime (UTC)")
                object.__setattr__(self, name, moment.astimezone(UTC))
        object.__setattr__(self, "resources", tuple(_check("resources", "resource", r) for r in self.resources))

    def to_text(self) -> str:
        """Return the EIP-4361 text, the exact string the wallet signs with ``personal_sign``."""
        origin = self.domain if self.scheme is None else f"{self.scheme}://{self.domain}"
        lines = [origin + _HEADER, self.address, "", *([] if self.statement is None else [self.statement]), ""]
        for tag, name, _ in _FIELD_LINES:
            if (value := getattr(self, name)) is not None:
                lines.append(f"{tag}: {_write_time(value) if name in _TIMES else value}")
        if self.resources:
            lines += ["Resources:", *(f"- {resource}" for resource in self.resources)]
        return "\n".join(lines)


def parse_message(text: str) -> SiweMessage:
    """Read an EIP-4361 message, refusing any text outside its grammar.

    The result's ``to_text()`` may spell the message differently (times in UTC with ``Z``, no
    leading zeros in the chain id, no empty ``Resources:`` line): check signatures over ``text``.
    Raises SiweMalformed naming the line (counted from 1) and what was expected there.
    """
    lines = _Lines(text)
    header = lines.take(f"'<domain>{_HEADER}'")
    if not header.endswith(_HEADER):
        raise SiweMalformed(f"line 1: {header!r} does not end with {_HEADER!r}")
    fields: dict[str, Any] = {}
    scheme, sep, domain = header.removesuffix(_HEADER).rpartition("://")
    if sep:
        fields["scheme"] = _check("line 1 (scheme)", "scheme", scheme)
    fields["domain"] = _check("line 1 (domain)", "domain", domain)
    fields["address"] = _check("line 2 (address)", "address", lines.take("the address"))
    lines.take_empty("an empty line after the address")
    # Without a statement two empty lines follow the address; an empty statement makes three.
    expected = "an empty line before 'URI: '"
    if lines.peek() not in (None, "") or lines.peek(1) == "":
        statement = lines.take("the statement")
        fields["statement"] = _check(f"line {lines.read} (statement)", "statement", statement)
        expected = (f"an empty line after the statement on line {lines.read} (without a statement, two empty "
                    "lines come between the address and 'URI: ')")
    lines.take_empty(expected)
    for tag, name, required in _FIELD_LINES:
        if required or (lines.peek() or "").startswith(f"{tag}: "):
            value = lines.take(f"'{tag}: '", f"{tag}: ")
            where = f"line {lines.read} ({tag})"
            fields[name] = _read_time(where, value) if name in _TIMES else _check(where, name, value)
    fields["chain_id"] = int(fields["chain_id"])
    if lines.peek() == "Resources:":
        lines.take("'Resources:'")
        resources = []
        while (lines.peek() or "").startswith("- "):
            resource = lines.take("'- '", "- ")
            resources.append(_check(f"line {lines.read} (resource)", "resource", resource))
        fields["resources"] = tuple(resources)
    if (extra := lines.peek()) is not None:
        raise SiweMalformed(f"line {lines.read + 1}: {extra!r} where the message should end; fields come in the "
                            f"order {_ORDER}, each at most once, and the message ends without a line break")
    return SiweMessage(**fields)


def new_nonce() -> str:
    """Return a fresh nonce: 32 hex digits (128 bits) from the operating system's random source."""
    return secrets.token_hex(16)


def verify_sign_in(text: str, signature: str | bytes, *, domain: str, uri: str, chain_id: int, now: datetime,
                   clock_skew: timedelta = CLOCK_SKEW) -> SiweMessage:
    """Check that ``text`` is an EIP-4361 message signed by its address for this service, valid at ``now``.

    The signature (65 bytes r, s, v with v in 27/28 or 0/1; hex with or without 0x, or bytes) is
    checked with EIP-191 ``personal_sign`` over ``text`` exactly as given. The message's domain
    must equal ``domain`` and its URI must equal ``uri`` exactly (no URI "under" it: the service
    writes the message, so nothing else is legitimate). It must carry an expiration time after
    ``now``, its not-before (if any) must not be after ``now``, and its issue time must not be
    later than ``now + clock_skew``. The message's scheme, if any, is the wallet's to check.

    Whether the nonce was issued by this service and is used only once is the caller's to check
    (it needs the database): compare the returned message's ``nonce`` and retire it.

    Raises SiweMalformed, SiweSignatureMismatch, SiweDomainMismatch, SiweUriMismatch,
    SiweChainMismatch, SiweExpired or SiweNotYetValid (all SiweError); ValueError if ``now``
    is naive.
    """
    if now.utcoffset() is None:
        raise ValueError(f"now {now} has no time zone; pass an aware datetime such as datetime.now(UTC)")
    message = parse_message(text)
    signer = _recover(text, signature)
    if signer != message.address:
        raise SiweSignatureMismatch(f"the signature was made by {signer}, not by the message's address "
                                    f"{message.address}")
    if message.domain != domain:
        raise SiweDomainMismatch(f"the message is for domain {message.domain!r}, this service is {domain!r}")
    if message.uri != uri:
        raise SiweUriMismatch(f"the message's URI is {message.uri!r}, this service signs in at {uri!r}")
    if message.chain_id != chain_id:
        raise SiweChainMismatch(f"the message is for chain id {message.chain_id}, this service is on chain id "
                                f"{chain_id}")
    if message.expiration_time is None:
        raise SiweExpired("the message has no Expiration Time; sign-in messages must expire")
    if message.expiration_time <= now:
        raise SiweExpired(f"the message expired at {_write_time(message.expiration_time)}; it is now "
                          f"{_write_time(now)}")
    if message.not_before is not None and message.not_before > now:
        raise SiweNotYetValid(f"the message is not valid before {_write_time(message.not_before)}; it is now "
                              f"{_write_time(now)}")
    if message.issued_at > now + clock_skew:
        raise SiweNotYetValid(f"the message was issued at {_write_time(message.issued_at)}, after now "
                              f"({_write_time(now)}) plus the allowed clock skew of {clock_skew}")
    return message


class _Lines:
    """The message's lines, read in order; errors name the line, counted from 1."""

    def __init__(self, text: str) -> None:
        self.lines, self.read = text.split("\n"), 0
        for number, line in enumerate(self.lines, 1):
            if "\r" in line:
                raise SiweMalformed(f"line {number} holds a carriage return; EIP-4361 lines end with LF alone")

    def peek(self, ahead: int = 0) -> str | None:
        index = self.read + ahead
        return self.lines[index] if index < len(self.lines) else None

    def take(self, expected: str, prefix: str = "") -> str:
        if (line := self.peek()) is None:
            raise SiweMalformed(f"line {self.read + 1}: the message ends where {expected} was expected")
        if not line.startswith(prefix):
            raise SiweMalformed(f"line {self.read + 1}: expected {expected}, found {line!r}")
        self.read += 1
        return line[len(prefix):]

    def take_empty(self, expected: str) -> None:
        if (line := self.take(expected)) != "":
            raise SiweMalformed(f"line {self.read}: expected {expected}, found {line!r}")


def _check(where: str, rule: str, value: str) -> str:
    pattern, expected = _RULES[rule]
    if not pattern.fullmatch(value):
        raise SiweMalformed(f"{where}: {value!r} is not {expected}")
    if rule == "address" and value != (checksummed := to_checksum_address(value)):
        raise SiweMalformed(f"{where}: {value!r} is not EIP-55 checksummed; write it {checksummed}")
    return value


def _read_time(where: str, value: str) -> datetime:
    if (match := _DATE_TIME.fullmatch(value)) is None:
        raise SiweMalformed(f"{where}: {value!r} is not an RFC 3339 date-time such as 2021-09-30T16:25:24Z")
    year, month, day, hour, minute, second, fraction, sign, offset_hours, offset_minutes = match.groups()
    try:
        offset = timedelta(0)
        if sign:
            if int(offset_hours) > 23 or int(offset_minutes) > 59:
                raise ValueError(f"offset {sign}{offset_hours}:{offset_minutes} is out of range")
            offset = (-1 if sign == "-" else 1) * timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        micro = int((fraction or "")[:6].ljust(6, "0"))
        return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro,
                        timezone(offset)).astimezone(UTC)
    except (ValueError, OverflowError) as error:
        raise SiweMalformed(f"{where}: {value!r} is not a valid date-time: {error}") from error


def _write_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().removesuffix("+00:00") + "Z"


def _recover(text: str, signature: str | bytes) -> str:
    if isinstance(signature, str):
        if not re.fullmatch(r"(?:0x)?[0-9A-Fa-f]{130}", signature):
            raise SiweSignatureMismatch(f"signature {signature!r} is not 65 bytes in hex (130 hex digits, "
                                        "with or without 0x)")
        signature = bytes.fromhex(signature.removeprefix("0x"))
    if len(signature) != 65 or signature[64] not in (0, 1, 27, 28):
        raise SiweSignatureMismatch(f"signature {signature.hex()} is not 65 bytes r, s, v with v in 27, 28, 0 or 1")
    try:
        return str(Account.recover_message(encode_defunct(text=text), signature=signature))
    except (BadSignature, ValueError) as error:
        raise SiweSignatureMismatch(f"signature {signature.hex()} recovers no address: {error}") from error
