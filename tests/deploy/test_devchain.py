"""The development-chain calls do the same on Anvil and on Hardhat's network, the clock after a revert included."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from deploy.anvil import start_anvil, stop_anvil
from deploy.devchain import advance_time, mine, revert_to, rpc, set_balance, set_code, set_storage_at, snapshot
from deploy.hardhat import start_hardhat, stop_hardhat


@pytest.fixture(scope="module", params=["anvil", "hardhat"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The JSON-RPC URL of a fresh chain of each kind, for the module."""
    if request.param == "anvil":
        anvil = start_anvil(tmp_path_factory.mktemp("anvil"))
        yield anvil.rpc_url
        stop_anvil(anvil)
    else:
        hardhat = start_hardhat(tmp_path_factory.mktemp("hardhat"))
        yield hardhat.rpc_url
        stop_hardhat(hardhat)


def _latest(url: str) -> tuple[int, int]:
    block = rpc(url, "eth_getBlockByNumber", ["latest", False])
    return int(block["number"], 16), int(block["timestamp"], 16)


def test_after_a_revert_the_next_block_follows_the_restored_one(url: str) -> None:
    """However long the snapshot was held (Hardhat's own revert would put the next block 2 x 3 s later)."""
    mine(url)
    number, timestamp = _latest(url)
    mark = snapshot(url)
    mine(url, 5)
    time.sleep(3)
    revert_to(url, mark)
    assert _latest(url) == (number, timestamp)
    mine(url)
    assert _latest(url)[0] == number + 1
    assert _latest(url)[1] - timestamp <= 1


def test_right_after_a_revert_time_moves_by_what_was_asked(url: str) -> None:
    mark = snapshot(url)
    mine(url)
    revert_to(url, mark)
    _, timestamp = _latest(url)
    advance_time(url, 1000)
    assert 1000 <= _latest(url)[1] - timestamp <= 1001


def test_mine_mines_that_many_blocks(url: str) -> None:
    number, _ = _latest(url)
    mine(url, 3)
    assert _latest(url)[0] == number + 3


def test_balance_code_and_storage_are_written(url: str) -> None:
    account = Account.create().address
    set_balance(url, account, 12345)
    set_code(url, account, "0x6001600055")
    set_storage_at(url, account, 7, (42).to_bytes(32, "big"))
    assert int(rpc(url, "eth_getBalance", [account, "latest"]), 16) == 12345
    assert rpc(url, "eth_getCode", [account, "latest"]) == "0x6001600055"
    assert int(rpc(url, "eth_getStorageAt", [account, hex(7), "latest"]), 16) == 42


def test_a_storage_word_of_another_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a storage word is 32 bytes, got 31"):
        set_storage_at("http://127.0.0.1:9", "0x" + "00" * 20, 0, bytes(31))
