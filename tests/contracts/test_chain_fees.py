"""``Chain.fee_per_gas`` quotes the fees ``Chain.transact`` sends a transaction with, and what it pays.

``metai-node status`` prices the hospital's next contributions with it (node/gas.py): if web3's way
of filling in the fees changed, the quote would no longer be what a contribution is charged.
"""

from __future__ import annotations

from contracts.exchange import Exchange
from contracts.roles import Role
from tests.conftest import Actors


def test_the_quote_is_the_fee_cap_and_tip_a_transaction_is_sent_with(exchange: Exchange, actors: Actors) -> None:
    chain = exchange.chain
    fee = chain.fee_per_gas()
    latest = chain.w3.eth.get_block("latest")
    assert fee.base_fee == latest["baseFeePerGas"]
    tx = exchange.roles.grant(actors.admin, Role.RESEARCHER, actors.stranger.address)
    sent = chain.w3.eth.get_transaction(tx.tx_hash)
    assert (sent["maxFeePerGas"], sent["maxPriorityFeePerGas"]) == (fee.max_per_gas, fee.tip)
    # It pays its own block's base fee plus the tip: per_gas, at the latest block's base fee, estimates
    # that. (How far apart the two are is not checked: Anvil's next base fee survives an evm_revert, so
    # in these tests it need not follow from the latest block's as EIP-1559 has it.)
    paid = int(chain.w3.eth.get_transaction_receipt(tx.tx_hash)["effectiveGasPrice"])
    assert paid == int(chain.w3.eth.get_block(tx.block_number)["baseFeePerGas"]) + fee.tip
    assert fee.per_gas == fee.base_fee + fee.tip


def test_the_balance_at_a_block_is_the_balance_then(exchange: Exchange, actors: Actors) -> None:
    chain = exchange.chain
    before, block = chain.balance(actors.stranger.address), chain.block_number
    chain.send_value(actors.admin, actors.stranger.address, 12345)
    assert chain.balance(actors.stranger.address) == before + 12345
    assert chain.balance(actors.stranger.address, block=block) == before
