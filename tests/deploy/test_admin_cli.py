"""``metai-admin roles grant|revoke|list`` on the session's Anvil chain, as the consortium admin would run it.

The admin seat's own commands (``metai-admin admin ...``) are tested in ``test_admin_seat.py``.

The commands run in-process (typer's CliRunner) with the settings as environment variables, from
an empty directory (no .env); the chain is put back after each test (``exchange``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import Result
from eth_typing import HexStr
from typer.testing import CliRunner

import contracts.roles
from contracts.exchange import Exchange
from contracts.roles import Role
from deploy.admin import app
from tests.conftest import Actors
from tests.deploy.admin_fixtures import admin_key as _key
from tests.deploy.admin_fixtures import proposal

VALID_NAMES = "admin, hospital, researcher, coordinator"


def run(cli: CliRunner, *args: str) -> Result:
    return cli.invoke(app, ["roles", *args])


def listed(cli: CliRunner, role: str | None = None) -> dict[str, list[str]]:
    """The accounts ``roles list --json`` shows for each role."""
    result = run(cli, "list", *([role] if role else []), "--json")
    assert result.exit_code == 0, result.stderr
    return {name: [h["account"] for h in holders] for name, holders in json.loads(result.stdout)["roles"].items()}


# ---------------------------------------------------------------------- grant and revoke


def test_grant_then_list_shows_the_holder(cli: CliRunner, actors: Actors) -> None:
    result = run(cli, "grant", "researcher", actors.stranger.address)
    assert result.exit_code == 0, result.stderr
    assert listed(cli, "researcher") == {"researcher": [actors.researcher.address, actors.stranger.address]}


def test_grant_prints_the_transaction_and_its_block(cli: CliRunner, exchange: Exchange, actors: Actors) -> None:
    result = run(cli, "grant", "coordinator", actors.stranger.address)
    assert result.exit_code == 0, result.stderr
    match = re.fullmatch(rf"granted coordinator to {actors.stranger.address}: transaction (0x[0-9a-f]{{64}}) "
                         rf"in block (\d+) \(signed by {actors.admin.address}\)\n", result.stdout)
    assert match is not None, result.stdout
    receipt = exchange.chain.w3.eth.get_transaction_receipt(HexStr(match[1]))
    assert (receipt["status"], receipt["blockNumber"]) == (1, int(match[2]))
    assert exchange.roles.has(Role.COORDINATOR, actors.stranger.address)


def test_role_names_are_case_insensitive(cli: CliRunner, exchange: Exchange, actors: Actors) -> None:
    result = run(cli, "grant", "HoSpItAl", actors.stranger.address)
    assert result.exit_code == 0, result.stderr
    assert exchange.roles.has(Role.HOSPITAL, actors.stranger.address)


def test_revoke_removes_the_holder(cli: CliRunner, actors: Actors) -> None:
    result = run(cli, "revoke", "hospital", actors.hospital2.address)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"revoked hospital from {actors.hospital2.address}: transaction 0x")
    assert listed(cli, "hospital") == {"hospital": [actors.hospital.address, actors.outsider_hospital.address]}


def test_granting_a_role_already_held_sends_nothing_and_succeeds(cli: CliRunner, exchange: Exchange,
                                                                 actors: Actors) -> None:
    before = exchange.chain.block_number
    result = run(cli, "grant", "hospital", actors.hospital.address)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{actors.hospital.address} already holds the hospital role; nothing sent\n"
    assert exchange.chain.block_number == before


def test_revoking_a_role_not_held_sends_nothing_and_succeeds(cli: CliRunner, exchange: Exchange,
                                                             actors: Actors) -> None:
    before = exchange.chain.block_number
    result = run(cli, "revoke", "coordinator", actors.stranger.address)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{actors.stranger.address} does not hold the coordinator role; nothing sent\n"
    assert exchange.chain.block_number == before


@pytest.mark.parametrize("role", ["admin", "ADMIN"])
def test_granting_the_admin_role_is_refused_pointing_to_admin_transfer(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                                        exchange: Exchange, actors: Actors,
                                                                        role: str) -> None:
    monkeypatch.delenv("METAI_RPC_URL")  # refused on the arguments alone, before the settings are read
    before = exchange.chain.block_number
    result = run(cli, "grant", role, actors.stranger.address)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the admin role is not granted: ConsortiumRoles has exactly one admin, and the seat moves in two "
        f"steps; run `metai-admin admin transfer {actors.stranger.address}`, and once the delay has passed "
        f"{actors.stranger.address} runs `metai-admin admin accept`\n")
    assert exchange.chain.block_number == before


def test_revoking_the_admin_role_is_refused_pointing_to_admin_transfer(cli: CliRunner, exchange: Exchange,
                                                                       actors: Actors) -> None:
    before = exchange.chain.block_number
    result = run(cli, "revoke", "admin", actors.admin.address)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: the admin role is not revoked: ConsortiumRoles always has exactly one admin; to hand the seat to "
        "another account, run `metai-admin admin transfer ADDRESS`, and that account accepts once the delay has "
        "passed\n")
    assert exchange.chain.block_number == before
    assert exchange.roles.has(Role.CONSORTIUM_ADMIN, actors.admin.address)


def test_revoke_has_no_force_option_any_more(cli: CliRunner, exchange: Exchange, actors: Actors) -> None:
    result = run(cli, "revoke", "hospital", actors.hospital.address, "--force")
    assert result.exit_code == 2  # a usage error: the option is unknown
    assert "No such option" in result.stderr
    assert exchange.roles.has(Role.HOSPITAL, actors.hospital.address)


# ---------------------------------------------------------------------- separation of duties


def test_the_coordinator_role_is_refused_to_a_hospital_naming_the_held_role(cli: CliRunner, exchange: Exchange,
                                                                            actors: Actors) -> None:
    before = exchange.chain.block_number
    result = run(cli, "grant", "coordinator", actors.hospital.address)
    assert result.exit_code == 1
    account = actors.hospital.address
    assert result.stderr == (
        f"error: {account} holds the hospital role, which cannot be combined with the coordinator role (the "
        "coordinator starts studies and records the rounds hospitals contribute, so it holds no other role); revoke "
        f"the hospital role from {account} first, or choose another account\n")
    assert exchange.chain.block_number == before


def test_the_coordinator_role_is_refused_naming_both_roles_held(cli: CliRunner, exchange: Exchange,
                                                                actors: Actors) -> None:
    exchange.roles.grant(actors.admin, Role.RESEARCHER, actors.hospital.address)
    result = run(cli, "grant", "coordinator", actors.hospital.address)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {actors.hospital.address} holds the hospital and researcher roles, "
                                    "which cannot be combined with the coordinator role")
    assert not exchange.roles.has(Role.COORDINATOR, actors.hospital.address)


@pytest.mark.parametrize("role", ["hospital", "researcher"])
def test_hospital_and_researcher_are_refused_to_the_coordinator(cli: CliRunner, exchange: Exchange, actors: Actors,
                                                                role: str) -> None:
    before = exchange.chain.block_number
    result = run(cli, "grant", role, actors.coordinator.address)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {actors.coordinator.address} holds the coordinator role, which cannot "
                                    f"be combined with the {role} role (")
    assert exchange.chain.block_number == before


def test_hospital_and_researcher_may_be_combined(cli: CliRunner, exchange: Exchange, actors: Actors) -> None:
    result = run(cli, "grant", "researcher", actors.hospital.address)
    assert result.exit_code == 0, result.stderr
    assert exchange.roles.has(Role.RESEARCHER, actors.hospital.address)


# ---------------------------------------------------------------------- --calldata


@pytest.mark.parametrize(("command", "role", "account", "function"), [
    ("grant", Role.HOSPITAL, "stranger", "grantRole"),
    ("revoke", Role.RESEARCHER, "researcher", "revokeRole"),
])
def test_calldata_prints_the_call_for_the_admin_and_sends_nothing(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                                  exchange: Exchange, actors: Actors, command: str,
                                                                  role: Role, account: str, function: str) -> None:
    monkeypatch.delenv("METAI_ADMIN_KEY")  # the multisig signs, not this key
    address = getattr(actors, account).address
    before = exchange.chain.block_number
    result = run(cli, command, role.name.lower(), address, "--calldata")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"; the consortium admin {actors.admin.address} is to send it")
    fields = proposal(result.stdout)
    assert (fields["to"], fields["value"]) == (exchange.roles.address, "0")
    assert fields["chain"] == str(exchange.chain.chain_id)
    fn, args = exchange.roles.contract.decode_function_input(fields["data"])
    assert (fn.fn_name, args) == (function, {"role": role.value, "account": address})
    assert fields["function"] == f"{function}(bytes32,address)"
    assert exchange.chain.block_number == before
    assert exchange.roles.has(role, address) is (command == "revoke")


def test_calldata_sends_nothing_for_a_role_already_held(cli: CliRunner, actors: Actors) -> None:
    result = run(cli, "grant", "hospital", actors.hospital.address, "--calldata")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{actors.hospital.address} already holds the hospital role; nothing sent\n"


# ---------------------------------------------------------------------- refusals before sending


@pytest.mark.parametrize("args", [("grant", "nurse", "{address}"), ("revoke", "nurse", "{address}"),
                                  ("list", "nurse")], ids=["grant", "revoke", "list"])
def test_an_unknown_role_is_refused_with_the_valid_names(cli: CliRunner, exchange: Exchange, actors: Actors,
                                                         args: tuple[str, ...]) -> None:
    before = exchange.chain.block_number
    result = run(cli, *(a.format(address=actors.stranger.address) for a in args))
    assert result.exit_code == 1
    assert result.stderr == f"error: unknown role 'nurse'; give one of {VALID_NAMES} (any case)\n"
    assert exchange.chain.block_number == before


@pytest.mark.parametrize("address", ["0x1234", "1f9840a85d5aF5bf1D1762F925BDADdC4201F984",
                                     "0x1F9840a85d5aF5bf1D1762F925BDADdC4201F984", "alice.eth"],
                         ids=["short", "no-0x", "bad-checksum", "a-name"])
def test_a_bad_address_is_refused_naming_it_and_the_expected_form(cli: CliRunner, exchange: Exchange,
                                                                  address: str) -> None:
    before = exchange.chain.block_number
    result = run(cli, "grant", "hospital", address)
    assert result.exit_code == 1
    assert result.stderr == (f"error: ADDRESS {address!r} is not an Ethereum address (0x and 40 hex digits, "
                             "checksummed if mixed-case); give the account's address as the wallet shows it\n")
    assert exchange.chain.block_number == before


def test_a_lower_case_address_is_taken_and_shown_checksummed(cli: CliRunner, actors: Actors) -> None:
    result = run(cli, "grant", "hospital", actors.stranger.address.lower())
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"granted hospital to {actors.stranger.address}: ")


def test_a_non_admin_key_shows_the_revert_by_its_custom_error_name(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                                  exchange: Exchange, actors: Actors) -> None:
    monkeypatch.setenv("METAI_ADMIN_KEY", _key(actors.stranger))
    result = run(cli, "grant", "hospital", actors.stranger.address)
    assert result.exit_code == 1
    assert result.stderr == (f"error: AccessControlUnauthorizedAccount(account='{actors.stranger.address}', "
                             "neededRole=CONSORTIUM_ADMIN) in ConsortiumRoles; only the consortium admin may do this: "
                             "set METAI_ADMIN_KEY to its key, or, if the admin is a multisig, add --calldata and "
                             "propose the transaction there (`metai-admin admin status` names it)\n")
    assert bytes(actors.stranger.key).hex() not in result.stdout + result.stderr
    assert not exchange.roles.has(Role.HOSPITAL, actors.stranger.address)


def test_grant_without_an_admin_key_is_refused(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                               actors: Actors) -> None:
    monkeypatch.delenv("METAI_ADMIN_KEY")
    result = run(cli, "grant", "hospital", actors.stranger.address)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: METAI_ADMIN_KEY is not set")


def test_a_missing_manifest_is_named(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METAI_MANIFEST", str(tmp_path / "absent.json"))
    result = run(cli, "list")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: no deployment manifest at {tmp_path / 'absent.json'}; set METAI_MANIFEST")


def test_a_chain_that_is_down_is_named_with_the_setting_to_check(cli: CliRunner,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("METAI_RPC_URL", f"http://127.0.0.1:{closed}")
    result = run(cli, "list")
    assert result.exit_code == 1
    assert result.stderr == (f"error: cannot reach the chain at http://127.0.0.1:{closed} (connection refused); "
                             "is it running? check METAI_RPC_URL\n")


# ---------------------------------------------------------------------- list


def test_list_json_has_every_role_with_its_holders_and_grants(cli: CliRunner, exchange: Exchange,
                                                              actors: Actors) -> None:
    result = run(cli, "list", "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"chain_id", "contract", "block", "roles"}
    assert (document["chain_id"], document["block"]) == (exchange.chain.chain_id, exchange.chain.block_number)
    assert document["contract"] == exchange.roles.address
    accounts = {name: [h["account"] for h in holders] for name, holders in document["roles"].items()}
    assert accounts == {
        "admin": [actors.admin.address],
        "hospital": [actors.hospital.address, actors.hospital2.address, actors.outsider_hospital.address],
        "researcher": [actors.researcher.address],
        "coordinator": [actors.coordinator.address],
    }
    researcher = document["roles"]["researcher"][0]
    assert set(researcher) == {"account", "granted_block", "granted_by", "tx_hash"}
    assert researcher["granted_by"] == actors.admin.address
    receipt = exchange.chain.w3.eth.get_transaction_receipt(researcher["tx_hash"])
    assert receipt["blockNumber"] == researcher["granted_block"]


def test_list_of_one_role_shows_only_that_role(cli: CliRunner, actors: Actors) -> None:
    assert listed(cli, "Coordinator") == {"coordinator": [actors.coordinator.address]}


def test_list_table_shows_each_holder_and_a_role_nobody_holds(cli: CliRunner, exchange: Exchange,
                                                              actors: Actors) -> None:
    exchange.roles.revoke(actors.admin, Role.COORDINATOR, actors.coordinator.address)
    result = run(cli, "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == (f"ConsortiumRoles {exchange.roles.address} on chain {exchange.chain.chain_id}, "
                        f"block {exchange.chain.block_number}")
    assert lines[1].split() == ["role", "account", "granted", "in", "block", "granted", "by"]
    rows = [line.split() for line in lines[2:]]
    assert [row[:2] for row in rows] == [
        ["admin", actors.admin.address],
        ["hospital", actors.hospital.address],
        ["hospital", actors.hospital2.address],
        ["hospital", actors.outsider_hospital.address],
        ["researcher", actors.researcher.address],
        ["coordinator", "(none)"],
    ]
    assert rows[4][3] == actors.admin.address  # granted by the deployer


def test_list_needs_no_admin_key(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, actors: Actors) -> None:
    monkeypatch.delenv("METAI_ADMIN_KEY")
    assert listed(cli, "researcher") == {"researcher": [actors.researcher.address]}


def test_list_follows_has_role_where_the_events_disagree(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                         actors: Actors) -> None:
    real_has = contracts.roles.RolesClient.has

    def has(self: contracts.roles.RolesClient, role: Role, account: str, **kwargs: object) -> bool:
        if (role, account) == (Role.HOSPITAL, actors.hospital2.address):
            return False  # as if its RoleRevoked log had not been returned
        return real_has(self, role, account, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(contracts.roles.RolesClient, "has", has)
    result = run(cli, "list", "hospital", "--json")
    assert result.exit_code == 0, result.stderr
    accounts = [h["account"] for h in json.loads(result.stdout)["roles"]["hospital"]]
    assert accounts == [actors.hospital.address, actors.outsider_hospital.address]
    assert result.stderr.startswith(f"warning: the events say {actors.hospital2.address} holds the hospital role, "
                                    "hasRole at block ")


# ---------------------------------------------------------------------- the command line itself


def test_metai_admin_is_a_console_script_of_this_app(repo_root: Path) -> None:
    scripts = tomllib.loads((repo_root / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]
    module, _, name = scripts["metai-admin"].partition(":")
    assert getattr(importlib.import_module(module), name) is app


def test_python_m_deploy_admin_runs_the_same_commands(cli: CliRunner, tmp_path: Path, repo_root: Path,
                                                      actors: Actors) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    done = subprocess.run([sys.executable, "-m", "deploy.admin", "roles", "list", "researcher", "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [h["account"] for h in json.loads(done.stdout)["roles"]["researcher"]] == [actors.researcher.address]
