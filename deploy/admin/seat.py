"""The consortium admin seat of ``ConsortiumRoles`` (OpenZeppelin's AccessControlDefaultAdminRules).

There is exactly one admin. The seat moves in two steps: the admin begins a transfer to a new
account, and once the delay has passed the new account accepts it. The contract's clock is the
block timestamp, and a schedule has passed only in a block whose timestamp is *after* it
(``schedule < block.timestamp``), so "may accept after T" means in a block later than T.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from contracts.datause import ZERO_ADDRESS

if TYPE_CHECKING:
    from contracts.exchange import Exchange


@dataclass(frozen=True)
class Seat:
    """The admin seat as it stands at ``block``.

    Attributes:
        block: the block read; every value below is its state.
        block_time: that block's timestamp (seconds since 1970, UTC): the contract's "now".
        admin: the consortium admin, or None once the seat has been renounced.
        delay: seconds a transfer begun now waits before it may be accepted.
        pending_admin: the account a begun transfer is to (the zero address: the admin is
            renouncing the seat), or None when no transfer is pending.
        accept_after: the timestamp after which ``pending_admin`` may accept, or None.
        pending_delay: a scheduled new delay, or None when no change is scheduled.
        delay_after: the timestamp after which ``pending_delay`` takes effect, or None.
        increase_wait: the longest wait before a longer delay takes effect (OpenZeppelin: 5 days).
    """

    block: int
    block_time: int
    admin: str | None
    delay: int
    pending_admin: str | None
    accept_after: int | None
    pending_delay: int | None
    delay_after: int | None
    increase_wait: int

    @property
    def renouncing(self) -> bool:
        """Whether the pending transfer is to the zero address: the admin is giving up the seat."""
        return self.pending_admin == ZERO_ADDRESS

    def may_accept(self) -> bool:
        """Whether the delay of the pending transfer passed by this block (the next one can accept)."""
        return self.accept_after is not None and self.block_time > self.accept_after

    def delay_change_wait(self, new_delay: int) -> int:
        """Seconds after it is mined that a change of the delay to ``new_delay`` takes effect.

        A longer delay waits for itself, at most :attr:`increase_wait`; a shorter one waits for the
        difference, so a transfer begun right after the change is not accepted any earlier than
        under the old delay (``AccessControlDefaultAdminRules._delayChangeWait``).
        """
        if new_delay > self.delay:
            return min(new_delay, self.increase_wait)
        return self.delay - new_delay


def read_seat(exchange: Exchange) -> Seat:
    """Read the admin seat of ``exchange``'s ConsortiumRoles, every value at the latest block."""
    chain = exchange.chain
    block = chain.w3.eth.get_block("latest")
    number = int(block["number"])
    functions = exchange.roles.contract.functions

    def at(fn: Any) -> Any:
        return chain.call(fn, block=number)

    admin = str(at(functions.defaultAdmin()))
    pending, accept_after = at(functions.pendingDefaultAdmin())
    pending_delay, delay_after = at(functions.pendingDefaultAdminDelay())
    return Seat(
        block=number,
        block_time=int(block["timestamp"]),
        admin=None if admin == ZERO_ADDRESS else admin,
        delay=int(at(functions.defaultAdminDelay())),
        # A schedule of 0 means unset; the account alone cannot tell (renouncing is a transfer to 0x0).
        pending_admin=str(pending) if accept_after else None,
        accept_after=int(accept_after) if accept_after else None,
        pending_delay=int(pending_delay) if delay_after else None,
        delay_after=int(delay_after) if delay_after else None,
        increase_wait=int(at(functions.defaultAdminDelayIncreaseWait())),
    )


def utc(timestamp: int) -> str:
    """``timestamp`` (seconds since 1970) as ``2025-06-03 10:00:00 UTC``."""
    return _dt.datetime.fromtimestamp(timestamp, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: int) -> str:
    """``seconds`` in its two largest non-zero units: ``2 d``, ``1 d 23 h``, ``4 min 10 s``, ``0 s``."""
    parts, rest = [], seconds
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size} {unit}")
            rest %= size
    return " ".join(parts[:2]) or "0 s"
