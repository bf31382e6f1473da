"""``metai-admin admin status|transfer|accept|cancel|delay`` on the session's Anvil chain.

The consortium admin seat of ConsortiumRoles (AccessControlDefaultAdminRules) moves in two steps
separated by the delay (the session's deployment: 172800 s); ``advance_time`` moves the chain's
clock. The commands run in-process, as in ``test_admin_cli.py``; the chain is put back after
each test (``exchange``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from typer.testing import CliRunner
from web3.types import BlockIdentifier

from contracts.exchange import Exchange
from contracts.roles import Role
from deploy.admin import app
from deploy.anvil import AnvilNode, advance_time, rpc
from tests.conftest import Actors
from tests.deploy.admin_fixtures import admin_key as _key
from tests.deploy.admin_fixtures import proposal

DELAY = 172800
ZERO = "0x0000000000000000000000000000000000000000"


def _utc(timestamp: int) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["admin", *args])


def status(cli: CliRunner) -> dict[str, Any]:
    result = run(cli, "status", "--json")
    assert result.exit_code == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def block_time(exchange: Exchange, block: BlockIdentifier = "latest") -> int:
    return int(exchange.chain.w3.eth.get_block(block)["timestamp"])


def transfer(cli: CliRunner, exchange: Exchange, to: str) -> int:
    """Begin a transfer of the seat to ``to`` as the admin; the timestamp after which ``to`` may accept."""
    result = run(cli, "transfer", to)
    assert result.exit_code == 0, result.stderr
    tx_hash = re.search(r"transaction (0x[0-9a-f]{64})", result.stdout)
    assert tx_hash is not None, result.stdout
    receipt = exchange.chain.w3.eth.get_transaction_receipt(HexStr(tx_hash[1]))
    return block_time(exchange, receipt["blockNumber"]) + DELAY


def mine_at(anvil: AnvilNode, timestamp: int) -> None:
    """Mine a block whose timestamp is exactly ``timestamp``."""
    rpc(anvil.rpc_url, "evm_setNextBlockTimestamp", [timestamp])
    rpc(anvil.rpc_url, "evm_mine")


# ---------------------------------------------------------------------- status


def test_status_of_a_fresh_deployment_shows_the_admin_the_delay_and_nothing_pending(
        cli: CliRunner, exchange: Exchange, actors: Actors) -> None:
    document = status(cli)
    assert document == {
        "chain_id": exchange.chain.chain_id, "contract": exchange.roles.address,
        "block": exchange.chain.block_number, "block_time": block_time(exchange),
        "admin": actors.admin.address, "delay": DELAY, "pending_admin": None, "pending_delay": None,
    }


def test_status_text_names_the_pending_admin_and_when_it_may_accept(cli: CliRunner, exchange: Exchange,
                                                                    actors: Actors) -> None:
    after = transfer(cli, exchange, actors.stranger.address)
    result = run(cli, "status")
    assert result.exit_code == 0, result.stderr
    now = block_time(exchange)
    assert result.stdout.splitlines() == [
        f"ConsortiumRoles {exchange.roles.address} on chain {exchange.chain.chain_id}, "
        f"block {exchange.chain.block_number} at {_utc(now)}",
        f"admin:         {actors.admin.address}",
        "delay:         172800 s (2 d)",
        f"pending admin: {actors.stranger.address}, may accept after {_utc(after)} (in 2 d)",
        "pending delay: (none)",
    ]


def test_status_needs_no_admin_key(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, actors: Actors) -> None:
    monkeypatch.delenv("METAI_ADMIN_KEY")
    assert status(cli)["admin"] == actors.admin.address


# ---------------------------------------------------------------------- transfer and accept


def test_transfer_prints_the_transaction_and_when_the_new_admin_may_accept(cli: CliRunner, exchange: Exchange,
                                                                           anvil: AnvilNode, actors: Actors) -> None:
    # Mined later than the block the command reads first: the wait counts from the transaction's block.
    rpc(anvil.rpc_url, "evm_setNextBlockTimestamp", [block_time(exchange) + 7])
    result = run(cli, "transfer", actors.stranger.address)
    assert result.exit_code == 0, result.stderr
    first, second = result.stdout.splitlines()
    match = re.fullmatch(rf"began the transfer of the admin seat to {actors.stranger.address}: transaction "
                         rf"(0x[0-9a-f]{{64}}) in block (\d+) \(signed by {actors.admin.address}\)", first)
    assert match is not None, first
    after = block_time(exchange, int(match[2])) + DELAY
    assert second == (f"{actors.stranger.address} may accept after {_utc(after)} (in 2 d): with its key as "
                      "METAI_ADMIN_KEY, `metai-admin admin accept`; a multisig proposes what "
                      "`metai-admin admin accept --calldata` prints")
    assert status(cli)["pending_admin"] == {"account": actors.stranger.address, "accept_after": after,
                                            "may_accept": False}
    assert status(cli)["admin"] == actors.admin.address  # the first step moves nothing yet


def test_accept_before_the_delay_is_refused_saying_when_it_may(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                               exchange: Exchange, anvil: AnvilNode,
                                                               actors: Actors) -> None:
    after = transfer(cli, exchange, actors.stranger.address)
    mine_at(anvil, after - 3600)
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.stranger))
    before = exchange.chain.block_number
    result = run(cli, "accept")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: the delay of the transfer has not passed: {actors.stranger.address} may accept in a block after "
        f"{_utc(after)}, 1 h after the latest block (block {before}, at {_utc(after - 3600)}); run "
        "`metai-admin admin accept` again then\n")
    assert exchange.chain.block_number == before
    assert status(cli)["admin"] == actors.admin.address


def test_accept_in_the_block_at_the_schedule_is_still_refused_and_in_the_next_second_goes(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch, exchange: Exchange, anvil: AnvilNode,
        actors: Actors) -> None:
    # The contract takes a schedule as passed only in a block whose timestamp is after it.
    after = transfer(cli, exchange, actors.stranger.address)
    mine_at(anvil, after)
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.stranger))
    early = run(cli, "accept")
    assert early.exit_code == 1
    assert f"may accept in a block after {_utc(after)}, 0 s after the latest block" in early.stderr
    mine_at(anvil, after + 1)
    assert run(cli, "accept").exit_code == 0
    assert status(cli)["admin"] == actors.stranger.address


def test_accept_after_the_delay_moves_the_seat(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, exchange: Exchange,
                                               anvil: AnvilNode, actors: Actors) -> None:
    transfer(cli, exchange, actors.stranger.address)
    advance_time(anvil.rpc_url, DELAY + 1)
    assert status(cli)["pending_admin"]["may_accept"] is True
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.stranger))
    result = run(cli, "accept")
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(rf"{actors.stranger.address} accepted the admin seat from {actors.admin.address}: "
                        rf"transaction 0x[0-9a-f]{{64}} in block \d+ \(signed by {actors.stranger.address}\)\n",
                        result.stdout), result.stdout
    document = status(cli)
    assert (document["admin"], document["pending_admin"]) == (actors.stranger.address, None)
    assert exchange.roles.has(Role.CONSORTIUM_ADMIN, actors.stranger.address)
    assert not exchange.roles.has(Role.CONSORTIUM_ADMIN, actors.admin.address)


def test_accept_with_another_key_is_refused_naming_the_pending_admin(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                                     exchange: Exchange, anvil: AnvilNode,
                                                                     actors: Actors) -> None:
    transfer(cli, exchange, actors.stranger.address)
    advance_time(anvil.rpc_url, DELAY + 1)
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.researcher))
    before = exchange.chain.block_number
    result = run(cli, "accept")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: METAI_ADMIN_KEY is the key of {actors.researcher.address}, but the admin seat is pending for "
        f"{actors.stranger.address}; set METAI_ADMIN_KEY to the key of {actors.stranger.address}, or, if it is a "
        "multisig, run `metai-admin admin accept --calldata` and propose the transaction there\n")
    assert exchange.chain.block_number == before


def test_accept_with_nothing_pending_is_refused(cli: CliRunner, exchange: Exchange, actors: Actors) -> None:
    before = exchange.chain.block_number
    result = run(cli, "accept")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: no transfer of the admin seat is pending, so there is nothing to accept; the consortium admin "
        f"({actors.admin.address}) begins one with `metai-admin admin transfer ADDRESS`\n")
    assert exchange.chain.block_number == before


def test_transfer_again_to_the_pending_admin_sends_nothing_and_keeps_its_delay(
        cli: CliRunner, exchange: Exchange, anvil: AnvilNode, actors: Actors) -> None:
    after = transfer(cli, exchange, actors.stranger.address)
    advance_time(anvil.rpc_url, 3600)
    before = exchange.chain.block_number
    result = run(cli, "transfer", actors.stranger.address)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (f"a transfer of the admin seat to {actors.stranger.address} is already pending, which it "
                             f"may accept after {_utc(after)}; nothing sent (sending it again would start its delay "
                             "again)\n")
    assert exchange.chain.block_number == before
    assert status(cli)["pending_admin"]["accept_after"] == after


def test_transfer_to_another_account_replaces_the_pending_one(cli: CliRunner, exchange: Exchange,
                                                              actors: Actors) -> None:
    transfer(cli, exchange, actors.stranger.address)
    result = run(cli, "transfer", actors.researcher.address)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"began the transfer of the admin seat to {actors.researcher.address}, replacing "
                                    f"the pending transfer to {actors.stranger.address}: transaction 0x")
    assert status(cli)["pending_admin"]["account"] == actors.researcher.address


def test_transfer_to_the_admin_itself_sends_nothing(cli: CliRunner, exchange: Exchange, actors: Actors) -> None:
    before = exchange.chain.block_number
    result = run(cli, "transfer", actors.admin.address)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{actors.admin.address} is already the consortium admin; nothing sent\n"
    assert exchange.chain.block_number == before


def test_transfer_to_the_zero_address_is_refused(cli: CliRunner, exchange: Exchange) -> None:
    before = exchange.chain.block_number
    result = run(cli, "transfer", ZERO)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: ADDRESS {ZERO} is the zero address: a transfer to it begins renouncing "
                                    "the admin seat")
    assert exchange.chain.block_number == before
    assert status(cli)["pending_admin"] is None


def test_transfer_by_a_key_that_is_not_the_admin_shows_the_revert_and_what_to_do(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch, actors: Actors) -> None:
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.stranger))
    result = run(cli, "transfer", actors.stranger.address)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: AccessControlUnauthorizedAccount(account='{actors.stranger.address}', "
                                    "neededRole=CONSORTIUM_ADMIN) in ConsortiumRoles; only the consortium admin may "
                                    "do this: set METAI_ADMIN_KEY to its key, or, if the admin is a multisig, add "
                                    "--calldata")
    assert status(cli)["pending_admin"] is None


# ---------------------------------------------------------------------- cancel


def test_cancel_calls_off_the_pending_transfer(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, exchange: Exchange,
                                               anvil: AnvilNode, actors: Actors) -> None:
    transfer(cli, exchange, actors.stranger.address)
    result = run(cli, "cancel")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"cancelled the transfer of the admin seat to {actors.stranger.address}: "
                                    "transaction 0x")
    assert status(cli)["pending_admin"] is None
    advance_time(anvil.rpc_url, DELAY + 1)
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.stranger))
    assert run(cli, "accept").stderr.startswith("error: no transfer of the admin seat is pending")


def test_cancel_with_nothing_pending_sends_nothing(cli: CliRunner, exchange: Exchange) -> None:
    before = exchange.chain.block_number
    result = run(cli, "cancel")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "no transfer of the admin seat is pending; nothing sent\n"
    assert exchange.chain.block_number == before


# ---------------------------------------------------------------------- delay


def test_delay_schedules_a_shorter_delay_after_the_difference(cli: CliRunner, exchange: Exchange,
                                                             anvil: AnvilNode) -> None:
    rpc(anvil.rpc_url, "evm_setNextBlockTimestamp", [block_time(exchange) + 7])
    result = run(cli, "delay", "86400")
    assert result.exit_code == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.startswith("scheduled the change of the admin delay from 172800 s to 86400 s: transaction 0x")
    effective = block_time(exchange) + DELAY - 86400
    assert second == (f"the delay becomes 86400 s after {_utc(effective)} (in 1 d); a transfer begun before then "
                      "waits 172800 s")
    document = status(cli)
    assert (document["delay"], document["pending_delay"]) == (DELAY, {"delay": 86400, "effective_after": effective})


def test_a_longer_delay_waits_at_most_five_days(cli: CliRunner, exchange: Exchange) -> None:
    result = run(cli, "delay", str(30 * 86400))
    assert result.exit_code == 0, result.stderr
    assert status(cli)["pending_delay"]["effective_after"] == block_time(exchange) + 5 * 86400


def test_delay_equal_to_the_current_one_sends_nothing(cli: CliRunner, exchange: Exchange) -> None:
    before = exchange.chain.block_number
    result = run(cli, "delay", str(DELAY))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "the admin delay is already 172800 s (2 d); nothing sent\n"
    assert exchange.chain.block_number == before


def test_delay_back_to_the_current_one_calls_off_the_scheduled_change(cli: CliRunner) -> None:
    assert run(cli, "delay", "86400").exit_code == 0
    result = run(cli, "delay", str(DELAY))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("called off the scheduled change of the admin delay to 86400 s; it stays 172800 s: "
                                    "transaction 0x")
    assert status(cli)["pending_delay"] is None


@pytest.mark.parametrize("seconds", ["-1", str(2**48)])
def test_a_delay_out_of_range_is_refused(cli: CliRunner, exchange: Exchange, seconds: str) -> None:
    before = exchange.chain.block_number
    result = run(cli, "delay", "--", seconds)
    assert result.exit_code == 1
    assert result.stderr == (f"error: SECONDS {seconds} is out of range; give 0 to {2**48 - 1} (the contract stores "
                             "a uint48)\n")
    assert exchange.chain.block_number == before


# ---------------------------------------------------------------------- --calldata


@pytest.mark.parametrize(("args", "function", "arguments"), [
    (("transfer", "{stranger}"), "beginDefaultAdminTransfer", {"newAdmin": "{stranger}"}),
    (("cancel",), "cancelDefaultAdminTransfer", {}),
    (("delay", "86400"), "changeDefaultAdminDelay", {"newDelay": 86400}),
], ids=["transfer", "cancel", "delay"])
def test_calldata_prints_the_admins_transaction_and_sends_nothing(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                                  exchange: Exchange, actors: Actors,
                                                                  args: tuple[str, ...], function: str,
                                                                  arguments: dict[str, object]) -> None:
    if args[0] == "cancel":
        transfer(cli, exchange, actors.researcher.address)  # something to cancel
    monkeypatch.delenv("METAI_ADMIN_KEY")
    before = exchange.chain.block_number

    def fill(value: object) -> object:
        return value.format(stranger=actors.stranger.address) if isinstance(value, str) else value

    result = run(cli, *map(str, map(fill, args)), "--calldata")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].endswith(f"; the consortium admin {actors.admin.address} is to send it")
    fields = proposal(result.stdout)
    assert (fields["chain"], fields["to"], fields["value"]) == (str(exchange.chain.chain_id), exchange.roles.address,
                                                                "0")
    fn, decoded = exchange.roles.contract.decode_function_input(fields["data"])
    assert (fn.fn_name, decoded) == (function, {k: fill(v) for k, v in arguments.items()})
    assert fields["function"].startswith(f"{function}(")
    assert exchange.chain.block_number == before


def test_accept_calldata_before_the_delay_names_the_pending_admin_and_when(cli: CliRunner,
                                                                           monkeypatch: pytest.MonkeyPatch,
                                                                           exchange: Exchange,
                                                                           actors: Actors) -> None:
    after = transfer(cli, exchange, actors.stranger.address)
    monkeypatch.delenv("METAI_ADMIN_KEY")
    before = exchange.chain.block_number
    result = run(cli, "accept", "--calldata")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"not sent: the transaction below would accept the admin seat for {actors.stranger.address}; the pending "
        f"admin {actors.stranger.address} is to send it in a block after {_utc(after)}, 2 d after the latest block "
        f"(block {before}, at {_utc(block_time(exchange))})")
    fn, decoded = exchange.roles.contract.decode_function_input(proposal(result.stdout)["data"])
    assert (fn.fn_name, decoded) == ("acceptDefaultAdminTransfer", {})
    assert exchange.chain.block_number == before


def test_a_multisig_in_the_seat_accepts_and_grants_with_the_printed_transactions(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch, exchange: Exchange, anvil: AnvilNode, actors: Actors) -> None:
    # The stranger stands in for the multisig: an account that sends the transactions it is given.
    multisig = actors.stranger
    transfer(cli, exchange, multisig.address)
    advance_time(anvil.rpc_url, DELAY + 1)
    monkeypatch.delenv("METAI_ADMIN_KEY")
    accepting = proposal(run(cli, "accept", "--calldata").stdout)
    exchange.chain.transact_raw(multisig, accepting["to"], bytes.fromhex(accepting["data"][2:]))
    assert status(cli)["admin"] == multisig.address

    granting = cli.invoke(app, ["roles", "grant", "hospital", actors.patients[0].address, "--calldata"])
    assert granting.exit_code == 0, granting.stderr
    assert f"the consortium admin {multisig.address} is to send it" in granting.stdout.splitlines()[0]
    fields = proposal(granting.stdout)
    exchange.chain.transact_raw(multisig, fields["to"], bytes.fromhex(fields["data"][2:]))
    assert exchange.roles.has(Role.HOSPITAL, actors.patients[0].address)

    # The old admin's key no longer changes anything; the error says what to do instead.
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.admin))
    refused = cli.invoke(app, ["roles", "grant", "hospital", actors.patients[1].address])
    assert refused.exit_code == 1
    assert "add --calldata and propose the transaction there" in refused.stderr


# ---------------------------------------------------------------------- the examples of docs/admin.md

#: The accounts docs/admin.md names: Anvil's first two dev accounts (the deployer and admin, and the
#: consortium's Safe), and two accounts nobody holds a key to here.
HOSPITAL = "0x1f9840a85d5aF5bf1D1762F925BDADdC4201F984"
RESEARCHER = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
DOC = Path(__file__).parents[2] / "docs" / "admin.md"


def _abbreviated(text: str, contract: str) -> str:
    """``text`` as docs/admin.md shows outputs: addresses and hashes shortened, times, blocks and the contract
    address (which differ from run to run) as placeholders, runs of spaces as one."""
    text = re.sub(re.escape(contract), "<contract>", text)
    text = re.sub(r"0x5FbD(B2315678afecb367f032d93F642f64180aa3|…0aa3)", "<contract>", text)  # the doc's
    text = re.sub(r"transaction 0x[0-9a-f]{4}(?:[0-9a-f]{56}|…)[0-9a-f]{4}", "transaction <hash>", text)
    text = re.sub(r"\b(0x[0-9a-fA-F]{4})[0-9a-fA-F]{32}([0-9a-fA-F]{4})\b", r"\1…\2", text)
    text = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "<time>", text)
    text = re.sub(r"\bblock \d+", "block <n>", text)
    return re.sub(r" +", " ", text).strip()


def _doc_blocks(language: str) -> list[str]:
    """The fenced blocks of docs/admin.md tagged ``language`` (its ```text blocks are example outputs)."""
    return re.findall(rf"^ *```{language}\n(.*?)^ *```$", DOC.read_text("utf-8"), flags=re.MULTILINE | re.DOTALL)


def test_the_example_outputs_in_docs_admin_md_are_what_the_commands_print(
        cli: CliRunner, monkeypatch: pytest.MonkeyPatch, exchange: Exchange, anvil: AnvilNode,
        actors: Actors) -> None:
    # The doc's story: grant a hospital, hand the seat to a Safe, which then proposes every change.
    safe: LocalAccount = Account.from_key(anvil.dev_keys[1])
    printed: list[str] = []

    def do(*args: str, key: LocalAccount | None = actors.admin, code: int = 0) -> Result:
        if key is None:
            monkeypatch.delenv("METAI_ADMIN_KEY", raising=False)
        else:
            monkeypatch.setenv("METAI_ADMIN_KEY", _key(key))
        result = cli.invoke(app, list(args))
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        printed.extend(result.stdout.splitlines() + result.stderr.splitlines())
        return result

    do("roles", "grant", "hospital", HOSPITAL)
    do("roles", "grant", "coordinator", HOSPITAL, code=1)
    do("roles", "grant", "admin", safe.address, code=1)
    do("admin", "status", key=None)
    do("admin", "transfer", safe.address)
    do("admin", "status", key=None)
    do("admin", "accept", key=safe, code=1)
    accepting = proposal(do("admin", "accept", "--calldata", key=None).stdout)
    advance_time(anvil.rpc_url, DELAY + 1)
    exchange.chain.transact_raw(safe, accepting["to"], bytes.fromhex(accepting["data"][2:]))
    do("admin", "status", key=None)
    do("roles", "grant", "researcher", RESEARCHER, code=1)  # the old admin's key
    do("roles", "grant", "researcher", RESEARCHER, "--calldata", key=None)
    do("admin", "delay", "86400", "--calldata", key=None)
    do("admin", "delay", "86400", key=safe)  # an ordinary key here: the doc's example of a change sent

    contract = exchange.roles.address
    shown = {_abbreviated(line, contract) for line in printed}
    examples = [line.strip() for block in _doc_blocks("text") for line in block.splitlines()
                if line.strip() and not line.strip().startswith("$ ")]  # "$ ": the command, not its output
    assert len(examples) > 20
    assert [line for line in examples if _abbreviated(line, contract) not in shown] == []


def test_the_status_json_in_docs_admin_md_has_the_keys_the_command_prints(cli: CliRunner, exchange: Exchange,
                                                                          actors: Actors) -> None:
    transfer(cli, exchange, actors.stranger.address)
    documented = [json.loads(block) for block in _doc_blocks("json") if '"pending_admin"' in block]
    assert len(documented) == 1

    def shape(value: object) -> object:
        return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else type(value).__name__

    assert shape(documented[0]) == shape(status(cli))
