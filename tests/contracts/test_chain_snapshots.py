"""Each test starts from the chain as deployed: what one test changes is undone before the next.

The ``exchange`` fixture (tests/conftest.py) deploys once per session and undoes each test's
changes with ``evm_snapshot`` / ``evm_revert``. If that ever leaks (a revert refused, a snapshot
taken at the wrong time, state that Anvil does not restore), tests would pass or fail depending on
the order they run in; these tests fail instead.
"""

from __future__ import annotations

import pytest

from contracts.chain import Chain
from contracts.datause import Kind, Purpose
from contracts.exchange import Exchange
from contracts.roles import Role
from contracts.studies import StudyRequest
from deploy.anvil import AnvilNode, advance_time
from tests.conftest import Actors, chain_restored

HOUR = 3600


def _latest(chain: Chain) -> tuple[int, int]:
    block = chain.w3.eth.get_block("latest")
    return int(block["number"]), int(block["timestamp"])


def test_a_restored_chain_has_its_blocks_balances_nonces_roles_and_clock_back(
    anvil: AnvilNode, exchange: Exchange, actors: Actors
) -> None:
    chain = exchange.chain
    number, timestamp = _latest(chain)
    nonce = chain.w3.eth.get_transaction_count(actors.admin.address)
    balance = chain.balance(actors.stranger.address)
    with chain_restored(anvil):
        exchange.roles.grant(actors.admin, Role.RESEARCHER, actors.stranger.address)
        chain.send_value(actors.admin, actors.stranger.address, 12345)
        advance_time(anvil.rpc_url, 10 * HOUR)
        assert _latest(chain)[1] >= timestamp + 10 * HOUR  # the clock did move inside
        assert exchange.roles.has(Role.RESEARCHER, actors.stranger.address)
    assert _latest(chain)[0] == number
    assert chain.w3.eth.get_transaction_count(actors.admin.address) == nonce
    assert chain.balance(actors.stranger.address) == balance
    assert not exchange.roles.has(Role.RESEARCHER, actors.stranger.address)
    # The next transaction is signed with the restored nonce (read from the chain, not cached) and
    # mined at the real time again, not ten hours ahead.
    mined = chain.send_value(actors.admin, actors.stranger.address, 1)
    assert mined.block_number == number + 1
    assert _latest(chain)[1] < timestamp + 10 * HOUR


_FIRST_TURN: dict[str, object] = {}


@pytest.mark.parametrize("turn", [1, 2])
def test_a_test_sees_nothing_of_the_one_before(anvil: AnvilNode, exchange: Exchange, actors: Actors,
                                               turn: int) -> None:
    """Run twice in a row (a module stays on one worker): the second turn starts where the first
    started, with none of its role, payment, study or clock."""
    start = {
        "block": _latest(exchange.chain),
        "stranger's balance": exchange.chain.balance(actors.stranger.address),
        "stranger is coordinator": exchange.roles.has(Role.COORDINATOR, actors.stranger.address),
        "studies": exchange.studies.count(),
    }
    assert start["stranger is coordinator"] is False
    assert start["studies"] == 0
    if turn == 1:
        _FIRST_TURN.update(start)
    else:
        assert start == _FIRST_TURN  # a leak shows as a later block, a lower balance, a role or a study
    exchange.roles.grant(actors.admin, Role.COORDINATOR, actors.stranger.address)
    exchange.chain.send_value(actors.stranger, actors.admin.address, 10**17)
    exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.CT_SINOGRAM, hospitals=(actors.hospital.address,),
        task_code_hash=b"\x01" * 32, rounds=1))
    advance_time(anvil.rpc_url, 48 * HOUR)
    assert exchange.studies.count() == 1
    assert exchange.roles.has(Role.COORDINATOR, actors.stranger.address)
