"""The chain layer's errors for people: a chain that is down, a malformed URL, a missing role by its name."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from pydantic import ValidationError

from contracts.chain import Chain
from contracts.endpoint import check_rpc_url
from contracts.errors import ChainUnavailable, ConnectionFailed, ContractRevert, InvalidRpcUrl
from contracts.exchange import Exchange
from contracts.roles import Role
from deploy.anvil import start_anvil, stop_anvil


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_chain_that_is_down_is_one_clear_line() -> None:
    url = _closed_url()
    with pytest.raises(ChainUnavailable) as info:
        Chain(url)
    assert str(info.value) == f"cannot reach the chain at {url} (connection refused); is it running?"
    assert (info.value.url, info.value.reason) == (url, "connection refused")
    assert isinstance(info.value, ConnectionError)  # callers may catch the builtin


def test_a_chain_that_goes_away_mid_way_gives_the_same_error(tmp_path: Path) -> None:
    anvil = start_anvil(tmp_path / "anvil")
    try:
        chain = Chain(anvil.rpc_url)
        assert chain.block_number == 0
    finally:
        stop_anvil(anvil)
    with pytest.raises(ChainUnavailable, match=rf"^cannot reach the chain at {anvil.rpc_url} \(connection refused\)"):
        chain.balance("0x" + "11" * 20)


def test_a_web_server_that_is_not_a_chain_is_named_as_such() -> None:
    class NotFound(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(ConnectionFailed) as info:
            Chain(url)
    finally:
        server.shutdown()
        server.server_close()
    assert not isinstance(info.value, ChainUnavailable)
    assert str(info.value) == f"{url} answers HTTP 404, not as an EVM JSON-RPC endpoint; check the URL"


@pytest.mark.parametrize(("url", "why"), [
    ("notaurl", r"'notaurl' is not a JSON-RPC URL \(no scheme\)"),
    ("ws://127.0.0.1:8545", r"\(scheme 'ws'\)"),
    ("http://:8545", "names no host"),
    ("http://127.0.0.1:99999", "bad port"),
    ("http://127.0.0.1:0", "has port 0"),
])
def test_a_malformed_url_is_refused_before_connecting(url: str, why: str) -> None:
    with pytest.raises(InvalidRpcUrl, match=why):
        check_rpc_url(url)
    with pytest.raises(InvalidRpcUrl, match=why):
        Chain(url)


@pytest.mark.parametrize("name", ["METAI_NODE_RPC_URL", "METAI_RPC_URL"])
def test_settings_refuse_a_malformed_url_when_they_load(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    from deploy.settings import Settings
    from node.config import NodeSettings

    monkeypatch.setenv(name, "htp:/127.0.0.1:8545")
    settings = NodeSettings if name == "METAI_NODE_RPC_URL" else Settings
    with pytest.raises(ValidationError, match=r"rpc_url\n  Value error, 'htp:/127.0.0.1:8545' is not a JSON-RPC URL"):
        settings(_env_file=None)  # type: ignore[call-arg]


def test_a_missing_role_shows_the_role_by_name(exchange: Exchange, actors) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractRevert) as info:
        exchange.roles.grant(actors.hospital, Role.HOSPITAL, actors.stranger.address)
    assert info.value.values["neededRole"] == Role.CONSORTIUM_ADMIN.value  # the value stays the bytes32
    assert str(info.value) == (f"AccessControlUnauthorizedAccount(account='{actors.hospital.address}', "
                               "neededRole=CONSORTIUM_ADMIN) in ConsortiumRoles")
    with pytest.raises(ContractRevert) as info:
        exchange.studies.start(actors.researcher, 1)
    assert f"(account='{actors.researcher.address}', neededRole=COORDINATOR)" in str(info.value)


def test_a_transaction_mined_and_reverted_is_explained_when_its_receipt_is_read(exchange: Exchange,  # type: ignore[no-untyped-def]
                                                                                 actors) -> None:
    # Sent with a gas limit of its own (no estimate to refuse it first), by an account that administers nothing:
    # it is mined and reverts; reading its receipt later replays it with the calldata the node returns.
    chain = exchange.chain
    fn = exchange.roles.contract.functions.grantRole(Role.HOSPITAL.value, actors.stranger.address)
    tx = fn.build_transaction({"from": actors.hospital.address, "chainId": chain.chain_id, "gas": 200_000,
                               "nonce": chain.pending_nonce(actors.hospital.address)})
    tx_hash = chain.w3.eth.send_raw_transaction(actors.hospital.sign_transaction(tx).raw_transaction)
    chain.w3.eth.wait_for_transaction_receipt(tx_hash)
    with pytest.raises(ContractRevert) as info:
        chain.receipt(tx_hash.to_0x_hex())
    assert info.value.error == "AccessControlUnauthorizedAccount"
    assert info.value.values["account"] == actors.hospital.address
