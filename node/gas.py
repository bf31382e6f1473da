"""Whether the hospital's account can pay for the node's next anchoring transactions (``metai-node status``).

Every transaction the node sends is paid from the hospital's account, in the chain's native
currency: dataset registrations (``register``), the data committee's decisions (``approve``,
``decline``) and, in every round of every study the hospital takes part in, its contribution
(``StudyRegistry.contribute``, sent by the round's ClientApp or the signing agent). The
contributions are what keeps costing, so the check is in contributions: the next ``N`` of them,
``N`` being the rounds still to come in the studies this hospital approved (or
``METAI_NODE_GAS_ROUNDS``), at least one.

A contribution's gas cannot be estimated from the chain before its round is open (the call
reverts until then), so it is the measured figure below, for as many datasets as the node has
registered (a contribution names the registered datasets its cohort's records come from, at most
all of them). Its price is the chain's now (:meth:`contracts.chain.Chain.fee_per_gas`). The
balance must cover all but the last contribution at the price they pay, and the last one at its
gas limit times the fee cap: a node refuses a transaction the sender's balance cannot cover at
its limit, even though only the gas used is paid.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.chain import FeePerGas, gas_limit_for
from contracts.studies import Decision, StudyStatus
from node.node import Node
from node.study_review import studies_naming

#: Gas one round contribution naming one registered dataset uses: benchmarks/results/gas.json,
#: "round contribution per hospital (max of 4)" (benchmarks/gas.py, measured on Anvil).
CONTRIBUTION_GAS = 69_318
#: Gas one round contribution naming three registered datasets uses: benchmarks/results/gas.json,
#: "round contribution naming 3 datasets".
CONTRIBUTION_GAS_3_DATASETS = 76_290
#: Each further dataset a contribution names: its id in the calldata and in the event, and the check
#: that the hospital registered it (the two figures above, per dataset between them).
GAS_PER_FURTHER_DATASET = (CONTRIBUTION_GAS_3_DATASETS - CONTRIBUTION_GAS) // 2

WEI_PER_ETH = 10**18
WEI_PER_GWEI = 10**9


def contribution_gas(datasets: int) -> int:
    """The gas a contribution naming ``datasets`` registered datasets uses (at least one is named)."""
    return CONTRIBUTION_GAS + GAS_PER_FURTHER_DATASET * (max(1, datasets) - 1)


@dataclass(frozen=True)
class StudyAhead:
    """A study this hospital approved that still needs its contributions."""

    study_id: int
    #: Contributions the hospital still sends to it: the rounds not yet recorded, less the open
    #: round's if it already contributed to it.
    rounds: int
    #: False: approved by this hospital, waiting for the other hospitals' decisions and the start.
    running: bool


def studies_ahead(node: Node) -> tuple[StudyAhead, ...]:
    """The studies this hospital approved that are running or waiting to start, with the rounds left to it."""
    _, views = studies_naming(node, decided=True)
    ahead = []
    for view in views:
        study = view.record
        if view.decision != Decision.APPROVED or study.status not in (StudyStatus.REQUESTED, StudyStatus.RUNNING):
            continue
        left = study.rounds - study.rounds_completed
        running = study.status == StudyStatus.RUNNING
        if running and left > 0:
            open_round = study.rounds_completed + 1
            if node.exchange.studies.cohort_root_of(study.study_id, open_round, node.address,
                                                    block=view.block) != bytes(32):
                left -= 1  # its contribution to the open round is on chain already
        if left > 0:
            ahead.append(StudyAhead(study.study_id, left, running))
    return tuple(ahead)


@dataclass(frozen=True)
class GasFunding:
    """The hospital account's balance against the cost of its next contributions, as read at ``block``."""

    address: str
    chain_id: int
    block: int
    #: The account's balance, in wei.
    balance: int
    fee: FeePerGas
    #: The registered datasets a contribution may name (the node's registered datasets).
    datasets: int
    #: The contributions the balance is checked against, and the studies they come from (empty
    #: when ``METAI_NODE_GAS_ROUNDS`` gave the number, or no approved study needs any).
    contributions: int
    studies: tuple[StudyAhead, ...]
    from_setting: bool

    @property
    def contribution_gas(self) -> int:
        """The gas one contribution uses."""
        return contribution_gas(self.datasets)

    @property
    def gas_limit(self) -> int:
        """The gas limit a contribution is sent with (the estimate with the chain client's margin)."""
        return gas_limit_for(self.contribution_gas)

    @property
    def contribution_cost(self) -> int:
        """What one contribution costs, in wei, at the current price."""
        return self.contribution_gas * self.fee.per_gas

    @property
    def needed(self) -> int:
        """The balance, in wei, the next :attr:`contributions` need: all but the last at their cost,
        the last at its gas limit times the fee cap (what the node checks before admitting it)."""
        if self.contributions <= 0:
            return 0
        return (self.contributions - 1) * self.contribution_cost + self.gas_limit * self.fee.max_per_gas

    @property
    def shortfall(self) -> int:
        """What the account lacks for the next :attr:`contributions`, in wei (0: it has enough)."""
        return max(0, self.needed - self.balance)

    @property
    def affordable(self) -> int | None:
        """How many contributions the balance pays for at the current price; None: gas is free on this chain."""
        first = self.gas_limit * self.fee.max_per_gas
        if first == 0:
            return None
        if self.balance < first:
            return 0
        return 1 + (self.balance - first) // self.contribution_cost


def gas_funding(node: Node, *, datasets: int, rounds: int | None = None) -> GasFunding:
    """Read the hospital account's balance and the chain's gas price, and count the contributions ahead.

    Parameters:
        datasets: the datasets the node registered (a contribution names at most these).
        rounds: check the balance against this many contributions (``METAI_NODE_GAS_ROUNDS``);
            None: the rounds left to this hospital in the studies it approved (:func:`studies_ahead`),
            at least one.
    """
    chain = node.exchange.chain
    block = chain.block_number
    balance = chain.balance(node.address, block=block)
    fee = chain.fee_per_gas()
    if rounds is not None:
        return GasFunding(node.address, chain.chain_id, block, balance, fee, datasets, rounds, (), True)
    ahead = studies_ahead(node)
    return GasFunding(node.address, chain.chain_id, block, balance, fee, datasets,
                      max(1, sum(s.rounds for s in ahead)), ahead, False)


def _exact(wei: int, unit: int) -> str:
    """``wei`` (not negative) in ``unit`` (a power of ten) as an exact decimal, without trailing zeros."""
    whole, part = divmod(wei, unit)
    digits = str(part).zfill(len(str(unit)) - 1).rstrip("0")
    return f"{whole}.{digits}" if digits else str(whole)


def ether(wei: int) -> str:
    """``wei`` in ETH, exactly: ``0.000071`` ETH for 71,000,000,000,000 wei."""
    return f"{_exact(wei, WEI_PER_ETH)} ETH"


def gwei(wei: int) -> str:
    """``wei`` in gwei, exactly: ``1.5 gwei`` for 1,500,000,000 wei."""
    return f"{_exact(wei, WEI_PER_GWEI)} gwei"
