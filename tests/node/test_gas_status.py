"""``metai-node status`` on gas: the hospital account's balance against its next round contributions.

Every figure is checked against the chain (Anvil, real): the balance exactly, the fees as
``Chain.fee_per_gas`` reads them (nothing is mined between the command and the test's reading, so the
latest block's base fee is the same), and the contributions counted from studies requested, approved,
started and contributed to on chain.
"""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import Result
from eth_utils.crypto import keccak
from typer.testing import CliRunner

from contracts.datause import Kind, Purpose
from contracts.studies import StudyRequest
from deploy.anvil import rpc
from node.cli import app
from node.gas import CONTRIBUTION_GAS, CONTRIBUTION_GAS_3_DATASETS, GAS_PER_FURTHER_DATASET, contribution_gas
from node.node import Node
from tests.conftest import NODE_PASSPHRASE

GAS_JSON = Path(__file__).parents[2] / "benchmarks" / "results" / "gas.json"


def run(node: Node, *args: str, **env: str | None) -> Result:
    settings: dict[str, str | None] = {"METAI_NODE_DIR": str(node.dir), "METAI_NODE_PASSPHRASE": NODE_PASSPHRASE,
                                       "METAI_NODE_RPC_URL": node.rpc_url, "METAI_NODE_GAS_ROUNDS": None, **env}
    return CliRunner().invoke(app, list(args), env=settings, catch_exceptions=False)


def request(exchange, actors, node: Node, rounds: int) -> int:  # type: ignore[no-untyped-def]
    """A study naming only ``node``'s hospital, with ``rounds`` rounds; its id."""
    study_id, _ = exchange.studies.request(actors.researcher, StudyRequest(
        purpose=Purpose.HMB, kinds=Kind.IMAGE, hospitals=(node.address,), task_code_hash=keccak(b"task"),
        rounds=rounds))
    return int(study_id)


def test_a_funded_hospital_sees_its_balance_and_what_a_contribution_costs_without_warning(make_node, chain) -> None:  # type: ignore[no-untyped-def]
    node = make_node("Funded Hospital")  # the factory sends it 1 ETH
    result = run(node, "status")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    fee, block, balance = chain.fee_per_gas(), chain.block_number, chain.balance(node.address)
    assert balance == 10**18
    assert fee.base_fee is not None  # Anvil prices as EIP-1559 chains do
    assert fee.tip is not None
    assert fee.per_gas == fee.base_fee + fee.tip
    assert fee.max_per_gas == fee.tip + 2 * fee.base_fee
    limit = CONTRIBUTION_GAS + CONTRIBUTION_GAS // 5 + 10_000  # the chain client's margin on an estimate
    cost = CONTRIBUTION_GAS * fee.per_gas
    affordable = 1 + (balance - limit * fee.max_per_gas) // cost
    assert f"hospital account {node.address}: 1 ETH (1000000000000000000 wei) at block {block}\n" in result.stdout
    assert f" per gas ({fee.per_gas} wei: base fee " in result.stdout
    assert (f"one round contribution naming one registered dataset: 69,318 gas = 0.{cost:018d}".rstrip("0")
            + f" ETH ({cost} wei); sent with a gas limit of {limit:,}\n") in result.stdout
    assert (f"the balance pays for {affordable:,} contributions; the next 1 (no approved study awaits one; at "
            f"least one is checked) need ") in result.stdout
    assert f"({limit * fee.max_per_gas} wei)\n" in result.stdout
    assert "warning" not in result.output


def test_a_drained_account_is_warned_with_the_shortfall_and_the_address_to_fund(make_node, chain) -> None:  # type: ignore[no-untyped-def]
    node = make_node("Drained Hospital")
    fee = chain.fee_per_gas()
    left = CONTRIBUTION_GAS * fee.per_gas // 2  # half of what one contribution uses
    rpc(chain.rpc_url, "anvil_setBalance", [node.address, hex(left)])
    result = run(node, "status")
    assert result.exit_code == 0, result.output  # a warning, not an error: the node can still do everything else
    assert chain.balance(node.address) == left
    assert f"({left} wei) at block " in result.stdout
    assert "the balance pays for 0 contributions; the next 1 " in result.stdout
    shortfall = (CONTRIBUTION_GAS + CONTRIBUTION_GAS // 5 + 10_000) * fee.max_per_gas - left
    assert result.stderr == (f"warning: the hospital account cannot pay for the next 1 contribution: it is short of "
                             f"0.{shortfall:018d}".rstrip("0") + f" ETH; send at least {shortfall} wei to "
                             f"{node.address} on chain {chain.chain_id} (docs/node.md#gas)\n")


def test_the_contributions_ahead_are_the_rounds_left_in_the_studies_the_hospital_approved(  # type: ignore[no-untyped-def]
        make_node, exchange, actors, chain) -> None:
    node = make_node("Busy Hospital")
    running = request(exchange, actors, node, rounds=3)
    waiting = request(exchange, actors, node, rounds=2)
    request(exchange, actors, node, rounds=5)  # not decided: no contribution is due to it
    declined = request(exchange, actors, node, rounds=7)
    for study in (running, waiting):
        exchange.studies.approve(node.account, study)
    exchange.studies.decline(node.account, declined)
    exchange.studies.start(actors.coordinator, running)
    result = run(node, "status")
    assert result.exit_code == 0, result.output
    assert (f"the next 5 (study {running}: 3 rounds left; study {waiting}: 2 rounds left, awaiting its start) "
            "need ") in result.stdout

    # The open round's contribution made, the hospital owes that study two more.
    dataset, _ = exchange.datasets.register(node.account, keccak(b"records"), 4, Kind.IMAGE, "CT", synthetic=True)
    tx = exchange.studies.contribute(node.account, running, 1, keccak(b"cohort"), 4, chain.block_number, [dataset],
                                     keccak(b"update"))
    assert abs(tx.gas_used - CONTRIBUTION_GAS) < GAS_PER_FURTHER_DATASET  # the measured figure holds here too
    result = run(node, "status")
    assert f"the next 4 (study {running}: 2 rounds left; study {waiting}: 2 rounds left, awaiting its start) " \
           in result.stdout
    fee = chain.fee_per_gas()
    needed = 3 * CONTRIBUTION_GAS * fee.per_gas + (CONTRIBUTION_GAS + CONTRIBUTION_GAS // 5 + 10_000) * fee.max_per_gas
    assert f"need 0.{needed:018d}".rstrip("0") + f" ETH ({needed} wei)\n" in result.stdout

    # The setting overrides the count.
    result = run(node, "status", METAI_NODE_GAS_ROUNDS="40")
    assert result.exit_code == 0, result.output
    assert "the next 40 (METAI_NODE_GAS_ROUNDS) need " in result.stdout


def test_a_contribution_s_gas_follows_the_registered_datasets_it_may_name() -> None:
    assert contribution_gas(0) == contribution_gas(1) == 69_318  # a contribution names at least one
    assert contribution_gas(3) == 76_290
    assert contribution_gas(11) == 69_318 + 10 * 3_486


def test_the_gas_figures_are_the_measured_ones() -> None:
    measured = {m["metric"]: m["value"] for m in json.loads(GAS_JSON.read_text("utf-8"))["measurements"]}
    assert measured["round contribution per hospital (max of 4)"] == CONTRIBUTION_GAS
    assert measured["round contribution naming 3 datasets"] == CONTRIBUTION_GAS_3_DATASETS
