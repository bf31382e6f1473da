"""Sign-In with Ethereum messages are written and read in EIP-4361's exact form, and verified strictly."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from hypothesis import given
from hypothesis import strategies as st

from coordinator.core.siwe import CLOCK_SKEW, SiweMessage, new_nonce, parse_message, verify_sign_in
from coordinator.errors import (
    CoordinatorError,
    SiweChainMismatch,
    SiweDomainMismatch,
    SiweError,
    SiweExpired,
    SiweMalformed,
    SiweNotYetValid,
    SiweSignatureMismatch,
    SiweUriMismatch,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DOMAIN, URI, CHAIN = "127.0.0.1:8000", "http://127.0.0.1:8000/login", 31337
SPEC_ADDRESS = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
# The first example of EIP-4361 (implicit scheme), verbatim.
SPEC_EXAMPLE = f"""example.com wants you to sign in with your Ethereum account:
{SPEC_ADDRESS}

I accept the ExampleOrg Terms of Service: https://example.com/tos

URI: https://example.com/login
Version: 1
Chain ID: 1
Nonce: 32891756
Issued At: 2021-09-30T16:25:24Z
Resources:
- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/
- https://example.com/my-web2-claim.json"""


@pytest.fixture
def account() -> LocalAccount:
    key: LocalAccount = Account.from_key("0x" + "11" * 32)
    return key


@pytest.fixture
def message(account: LocalAccount) -> SiweMessage:
    return SiweMessage(domain=DOMAIN, address=account.address, statement="Sign in to the MeTAI exchange.",
                       uri=URI, chain_id=CHAIN, nonce="abcDEF123456789xyz", issued_at=NOW - timedelta(seconds=5),
                       expiration_time=NOW + timedelta(minutes=5))


def sign(account: LocalAccount, text: str) -> str:
    return "0x" + bytes(account.sign_message(encode_defunct(text=text)).signature).hex()


def verify(text: str, signature: str | bytes, *, chain_id: int = CHAIN, now: datetime = NOW) -> SiweMessage:
    return verify_sign_in(text, signature, domain=DOMAIN, uri=URI, chain_id=chain_id, now=now)


def signed(account: LocalAccount, message: SiweMessage, **changes: object) -> tuple[str, str]:
    """The text of ``message`` with ``changes``, and its signature by ``account``."""
    text = replace(message, **changes).to_text()  # type: ignore[arg-type]
    return text, sign(account, text)


# ------------------------------------------------------------------------------------------ writing and reading

def test_the_spec_example_is_read_field_by_field() -> None:
    assert parse_message(SPEC_EXAMPLE) == SiweMessage(
        domain="example.com", address=SPEC_ADDRESS,
        statement="I accept the ExampleOrg Terms of Service: https://example.com/tos",
        uri="https://example.com/login", chain_id=1, nonce="32891756",
        issued_at=datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC),
        resources=("ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/",
                   "https://example.com/my-web2-claim.json"))


def test_the_spec_example_is_written_back_byte_for_byte() -> None:
    assert parse_message(SPEC_EXAMPLE).to_text() == SPEC_EXAMPLE


def test_an_explicit_scheme_and_port_are_read_apart_from_the_domain() -> None:
    parsed = parse_message("https://example.com:3388" + SPEC_EXAMPLE.removeprefix("example.com"))
    assert (parsed.scheme, parsed.domain) == ("https", "example.com:3388")


def test_every_field_is_written_on_its_line_in_the_specs_order(account: LocalAccount) -> None:
    full = SiweMessage(scheme="http", domain=DOMAIN, address=account.address, statement="Hello.", uri=URI,
                       chain_id=CHAIN, nonce="12345678", issued_at=NOW, expiration_time=NOW + timedelta(hours=1),
                       not_before=NOW + timedelta(seconds=1.5), request_id="req-1",
                       resources=("https://a.example/x", "ipfs://bafy/"))
    assert full.to_text() == (
        f"http://{DOMAIN} wants you to sign in with your Ethereum account:\n{account.address}\n\nHello.\n\n"
        f"URI: {URI}\nVersion: 1\nChain ID: {CHAIN}\nNonce: 12345678\nIssued At: 2026-05-01T12:00:00Z\n"
        "Expiration Time: 2026-05-01T13:00:00Z\nNot Before: 2026-05-01T12:00:01.500000Z\nRequest ID: req-1\n"
        "Resources:\n- https://a.example/x\n- ipfs://bafy/")


def test_without_a_statement_two_empty_lines_follow_the_address(message: SiweMessage) -> None:
    text = replace(message, statement=None).to_text()
    assert f"{message.address}\n\n\nURI: " in text


def test_an_empty_statement_is_an_empty_line_between_the_two_empty_lines(message: SiweMessage) -> None:
    text = replace(message, statement="").to_text()
    assert f"{message.address}\n\n\n\nURI: " in text
    assert parse_message(text).statement == ""


def test_digits_of_a_second_past_the_sixth_are_dropped() -> None:
    parsed = parse_message(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24.1234567Z"))
    assert parsed.issued_at == datetime(2021, 9, 30, 16, 25, 24, 123456, tzinfo=UTC)


def test_an_offset_is_read_as_the_same_instant_and_written_in_utc() -> None:
    parsed = parse_message(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30T18:55:24.25+02:30"))
    assert parsed.issued_at == datetime(2021, 9, 30, 16, 25, 24, 250000, tzinfo=UTC)
    assert "Issued At: 2021-09-30T16:25:24.250000Z" in parsed.to_text()


def test_lower_case_t_and_z_are_accepted_as_rfc_3339_allows() -> None:
    parsed = parse_message(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30t16:25:24z"))
    assert parsed.issued_at == datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)


def test_an_aware_time_in_another_zone_is_held_in_utc(message: SiweMessage) -> None:
    tokyo = replace(message, issued_at=datetime(2026, 5, 1, 21, tzinfo=timezone(timedelta(hours=9))))
    assert tokyo.issued_at.tzinfo is UTC
    assert tokyo.issued_at == NOW


_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
_host = st.text(_UNRESERVED + _SUB_DELIMS, min_size=1, max_size=20)
_domains = st.builds(lambda host, port: host + port, _host, st.sampled_from(["", ":", ":8000", ":65535"]))
_schemes = st.from_regex(r"[A-Za-z][A-Za-z0-9+.\-]{0,8}", fullmatch=True)
_uris = st.builds(lambda scheme, rest: f"{scheme}:{rest}", _schemes, st.text(_UNRESERVED + _SUB_DELIMS + ":/?@",
                                                                             max_size=30))
_times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))
_messages = st.builds(
    SiweMessage,
    scheme=st.none() | _schemes, domain=_domains,
    address=st.binary(min_size=20, max_size=20).map(lambda raw: to_checksum_address("0x" + raw.hex())),
    statement=st.none() | st.text(_UNRESERVED + _SUB_DELIMS + ":/?#[]@ ", max_size=60),
    uri=_uris, chain_id=st.integers(0, 2**256 - 1),
    nonce=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=40),
    issued_at=_times, expiration_time=st.none() | _times, not_before=st.none() | _times,
    request_id=st.none() | st.text(_UNRESERVED + _SUB_DELIMS + ":@", max_size=20),
    resources=st.lists(_uris, max_size=3).map(tuple))


@given(_messages)
def test_a_written_message_reads_back_the_same(message: SiweMessage) -> None:
    assert parse_message(message.to_text()) == message


def test_a_new_nonce_is_long_alphanumeric_and_fresh() -> None:
    nonces = {new_nonce() for _ in range(100)}
    assert len(nonces) == 100
    assert all(re.fullmatch(r"[A-Za-z0-9]{17,}", nonce) for nonce in nonces)


# ------------------------------------------------------------------------------------------ malformed texts

LOWER = SPEC_ADDRESS.lower()


@pytest.mark.parametrize(("text", "match"), [
    pytest.param("", r"line 1: '' does not end with ' wants you to sign in", id="empty"),
    pytest.param(SPEC_EXAMPLE.replace("sign in with", "log in with"), r"line 1: .* does not end with", id="header"),
    pytest.param(SPEC_EXAMPLE.replace("example.com wants", "exa mple.com wants"),
                 r"line 1 \(domain\): 'exa mple.com' is not an RFC 3986 authority", id="domain"),
    pytest.param(SPEC_EXAMPLE.replace("example.com wants", "1ttp://example.com wants"),
                 r"line 1 \(scheme\): '1ttp' is not an RFC 3986 scheme", id="scheme"),
    pytest.param(SPEC_EXAMPLE.replace(SPEC_ADDRESS, LOWER),
                 rf"line 2 \(address\): '{LOWER}' is not EIP-55 checksummed; write it {SPEC_ADDRESS}",
                 id="lower-case address"),
    pytest.param(SPEC_EXAMPLE.replace(SPEC_ADDRESS, SPEC_ADDRESS[:-1]),
                 r"line 2 \(address\): .* is not an address: 0x and 40 hex digits", id="short address"),
    pytest.param(SPEC_EXAMPLE.replace(f"{SPEC_ADDRESS}\n\n", f"{SPEC_ADDRESS}\n"),
                 r"line 3: expected an empty line after the address, found 'I accept", id="no empty line"),
    pytest.param(SPEC_EXAMPLE.replace("Service: ", "Service:\n"),
                 r"line 5: expected an empty line after the statement on line 4 .*found 'https://example.com/tos'",
                 id="statement with a newline"),
    pytest.param(SPEC_EXAMPLE.replace("Terms of", "Terms \"of\""),
                 r"line 4 \(statement\): .* is not one line of RFC 3986 reserved and unreserved", id="statement"),
    pytest.param(SPEC_EXAMPLE.replace("\nI accept the ExampleOrg Terms of Service: https://example.com/tos\n", ""),
                 r"line 5: expected an empty line after the statement on line 4 \(without a statement, two empty "
                 r"lines come between the address and 'URI: '\), found 'Version: 1'",
                 id="one empty line without a statement"),
    pytest.param(SPEC_EXAMPLE.replace("Version: 1\n", ""), r"line 7: expected 'Version: ', found 'Chain ID: 1'",
                 id="missing line"),
    pytest.param(SPEC_EXAMPLE.split("\nIssued At")[0], r"line 10: the message ends where 'Issued At: ' was expected",
                 id="truncated"),
    pytest.param(SPEC_EXAMPLE.replace("Version: 1\nChain ID: 1", "Chain ID: 1\nVersion: 1"),
                 r"line 7: expected 'Version: ', found 'Chain ID: 1'", id="reordered required fields"),
    pytest.param(SPEC_EXAMPLE.replace("Z\nResources:",
                                      "Z\nNot Before: 2021-09-30T16:25:24Z\nExpiration Time: 2021-10-01T00:00:00Z"
                                      "\nResources:"),
                 r"line 12: 'Expiration Time: 2021-10-01T00:00:00Z' where the message should end; fields come in "
                 r"the order URI, Version, Chain ID, Nonce, Issued At, Expiration Time, Not Before",
                 id="reordered optional fields"),
    pytest.param(SPEC_EXAMPLE + "\nFoo: bar", r"line 14: 'Foo: bar' where the message should end", id="extra field"),
    pytest.param(SPEC_EXAMPLE + "\n", r"line 14: '' where the message should end; .*ends without a line break",
                 id="trailing line break"),
    pytest.param(SPEC_EXAMPLE.replace("\n", "\r\n"), r"line 1 holds a carriage return", id="CRLF"),
    pytest.param(SPEC_EXAMPLE.replace("Version: 1", "Version: 2"), r"line 7 \(Version\): '2' is not 1",
                 id="version"),
    pytest.param(SPEC_EXAMPLE.replace("Chain ID: 1", "Chain ID: 0x1"),
                 r"line 8 \(Chain ID\): '0x1' is not a chain id", id="hex chain id"),
    pytest.param(SPEC_EXAMPLE.replace("32891756", "3289175"),
                 r"line 9 \(Nonce\): '3289175' is not a nonce of at least 8 letters and digits", id="short nonce"),
    pytest.param(SPEC_EXAMPLE.replace("32891756", "32891756-x"),
                 r"line 9 \(Nonce\): '32891756-x' is not a nonce", id="nonce with a dash"),
    pytest.param(SPEC_EXAMPLE.replace("URI: https://example.com/login", "URI: example dot com"),
                 r"line 6 \(URI\): 'example dot com' is not an RFC 3986 URI", id="uri"),
    pytest.param(SPEC_EXAMPLE.replace("- https://", "* https://"), r"line 13: '\* https://.*' where the message "
                 "should end", id="resource bullet"),
    pytest.param(SPEC_EXAMPLE.replace("- https://example.com/my-web2-claim.json", "- no uri"),
                 r"line 13 \(resource\): 'no uri' is not an RFC 3986 URI", id="resource"),
    pytest.param(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30 16:25:24Z"),
                 r"line 10 \(Issued At\): '2021-09-30 16:25:24Z' is not an RFC 3339 date-time", id="space for T"),
    pytest.param(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24"),
                 r"line 10 \(Issued At\): .* is not an RFC 3339 date-time", id="no offset"),
    pytest.param(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-02-30T16:25:24Z"),
                 r"line 10 \(Issued At\): '2021-02-30T16:25:24Z' is not a valid date-time: day is out of range",
                 id="30 February"),
    pytest.param(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2016-12-31T23:59:60Z"),
                 r"line 10 \(Issued At\): .* is not a valid date-time: second must be in 0..59", id="leap second"),
    pytest.param(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "2021-09-30T16:25:24+24:00"),
                 r"is not a valid date-time: offset \+24:00 is out of range", id="offset"),
    pytest.param(SPEC_EXAMPLE.replace("2021-09-30T16:25:24Z", "0001-01-01T00:00:00+01:00"),
                 r"line 10 \(Issued At\): .* is not a valid date-time", id="before year 1 in UTC"),
])
def test_a_text_outside_the_grammar_is_refused_naming_the_line(text: str, match: str) -> None:
    with pytest.raises(SiweMalformed, match=match):
        parse_message(text)


def test_a_statement_with_a_newline_cannot_be_written(message: SiweMessage) -> None:
    with pytest.raises(SiweMalformed, match=r"statement: 'two\\nlines' is not one line"):
        replace(message, statement="two\nlines")


def test_a_naive_time_cannot_be_written(message: SiweMessage) -> None:
    with pytest.raises(SiweMalformed, match="issued_at 2026-05-01 12:00:00 has no time zone"):
        replace(message, issued_at=datetime(2026, 5, 1, 12))


def test_a_lower_case_address_cannot_be_written(message: SiweMessage) -> None:
    with pytest.raises(SiweMalformed, match=f"address: '{message.address.lower()}' is not EIP-55 checksummed"):
        replace(message, address=message.address.lower())


def test_siwe_errors_are_coordinator_errors_and_value_errors() -> None:
    assert issubclass(SiweMalformed, SiweError)
    assert issubclass(SiweError, CoordinatorError)
    assert issubclass(SiweError, ValueError)


# ------------------------------------------------------------------------------------------ verification

def test_a_message_signed_with_eth_account_verifies(account: LocalAccount, message: SiweMessage) -> None:
    text = message.to_text()
    assert verify(text, sign(account, text)) == message


def test_a_signature_without_0x_verifies(account: LocalAccount, message: SiweMessage) -> None:
    text = message.to_text()
    assert verify(text, sign(account, text).removeprefix("0x")).address == account.address


def test_a_signature_as_bytes_with_v_0_or_1_verifies(account: LocalAccount, message: SiweMessage) -> None:
    text = message.to_text()
    raw = bytes.fromhex(sign(account, text)[2:])
    assert verify(text, raw[:64] + bytes([raw[64] - 27])).address == account.address


def test_a_signature_by_another_key_names_both_addresses(account: LocalAccount, message: SiweMessage) -> None:
    other = Account.from_key("0x" + "22" * 32)
    text = message.to_text()
    with pytest.raises(SiweSignatureMismatch, match=f"made by {other.address}, not by the message's address "
                                                    f"{account.address}"):
        verify(text, sign(other, text))


def test_a_signature_over_another_text_does_not_verify(account: LocalAccount, message: SiweMessage) -> None:
    text = message.to_text()
    with pytest.raises(SiweSignatureMismatch, match=f"not by the message's address {account.address}"):
        verify(text.replace("Chain ID: 31337", "Chain ID: 1"), sign(account, text), chain_id=1)


@pytest.mark.parametrize(("signature", "match"), [
    ("0x1234", r"'0x1234' is not 65 bytes in hex"),
    ("zz" * 65, r"is not 65 bytes in hex"),
    (b"\x01" * 64, r"is not 65 bytes r, s, v"),
    (b"\x01" * 64 + b"\x25", r"is not 65 bytes r, s, v with v in 27, 28, 0 or 1"),
    (b"\xff" * 64 + b"\x1b", r"recovers no address"),
])
def test_an_unreadable_signature_is_refused(message: SiweMessage, signature: str | bytes, match: str) -> None:
    with pytest.raises(SiweSignatureMismatch, match=match):
        verify(message.to_text(), signature)


def test_a_message_for_another_domain_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    refusal = re.escape("for domain 'evil.example', this service is '127.0.0.1:8000'")
    with pytest.raises(SiweDomainMismatch, match=refusal):
        verify(*signed(account, message, domain="evil.example"))


def test_a_message_for_another_uri_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    with pytest.raises(SiweUriMismatch, match=f"URI is 'https://evil.example/login', this service signs in at "
                                              f"'{URI}'"):
        verify(*signed(account, message, uri="https://evil.example/login"))


def test_a_uri_under_the_expected_one_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    with pytest.raises(SiweUriMismatch, match=f"URI is '{URI}/more'"):
        verify(*signed(account, message, uri=URI + "/more"))


def test_a_message_for_another_chain_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    with pytest.raises(SiweChainMismatch, match="for chain id 1, this service is on chain id 31337"):
        verify(*signed(account, message, chain_id=1))


def test_an_expired_message_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    with pytest.raises(SiweExpired, match="expired at 2026-05-01T12:00:00Z; it is now 2026-05-01T12:00:00Z"):
        verify(*signed(account, message, expiration_time=NOW))


def test_a_message_without_expiration_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    with pytest.raises(SiweExpired, match="no Expiration Time"):
        verify(*signed(account, message, expiration_time=None))


def test_a_message_before_its_not_before_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    with pytest.raises(SiweNotYetValid, match="not valid before 2026-05-01T12:00:01Z; it is now 2026-05-01T12:00:00Z"):
        verify(*signed(account, message, not_before=NOW + timedelta(seconds=1)))


def test_a_message_issued_beyond_the_clock_skew_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    issued = NOW + CLOCK_SKEW + timedelta(seconds=1)
    refusal = r"issued at 2026-05-01T12:01:01Z, after now \(.*\) plus the allowed clock skew of 0:01:00"
    with pytest.raises(SiweNotYetValid, match=refusal):
        verify(*signed(account, message, issued_at=issued))


def test_a_message_issued_within_the_clock_skew_verifies(account: LocalAccount, message: SiweMessage) -> None:
    assert verify(*signed(account, message, issued_at=NOW + CLOCK_SKEW)).issued_at == NOW + CLOCK_SKEW


def test_a_naive_now_is_refused(account: LocalAccount, message: SiweMessage) -> None:
    with pytest.raises(ValueError, match="now 2026-05-01 12:00:00 has no time zone"):
        verify(*signed(account, message), now=datetime(2026, 5, 1, 12))
