"""``metai-admin admin``: who holds the consortium admin seat, and handing it over in two steps.

``status`` reads; ``transfer``, ``cancel`` and ``delay`` are the admin's (METAI_ADMIN_KEY is the
admin's key); ``accept`` is the new admin's (METAI_ADMIN_KEY is the pending admin's key). Each of
these four takes ``--calldata`` to print its transaction instead of sending it, for an admin
that is a multisig. What the contract would refuse for a reason the command line can see (no
transfer pending, the delay not passed, the wrong key) is refused before anything is sent,
saying what to do; a command that would change nothing sends nothing and exits 0.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from contracts.datause import ZERO_ADDRESS
from contracts.events import DefaultAdminDelayChangeScheduled, DefaultAdminTransferScheduled
from deploy.admin.roles import parse_address
from deploy.admin.seat import Seat, read_seat, span, utc
from deploy.admin.session import CalldataOpt, Change, Session, connect
from deploy.errors import AdminRefused
from deploy.settings import Settings

if TYPE_CHECKING:
    from contracts.chain import TxResult

#: The largest delay the contract stores (a uint48).
MAX_DELAY = 2**48 - 1

seat_app = typer.Typer(
    help="The consortium admin seat: one admin, handed over in two steps (begin, then accept after the delay).",
    no_args_is_help=True, add_completion=False, pretty_exceptions_show_locals=False)


@seat_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of text")] = False,
) -> None:
    """Show the admin, the delay, a pending transfer (and from when it may be accepted) and a pending delay change."""
    exchange = connect(Settings())
    seat = read_seat(exchange)
    if as_json:
        document: dict[str, Any] = {
            "chain_id": exchange.chain.chain_id,
            "contract": exchange.roles.address,
            "block": seat.block,
            "block_time": seat.block_time,
            "admin": seat.admin,
            "delay": seat.delay,
            "pending_admin": None if seat.accept_after is None else {
                "account": seat.pending_admin, "accept_after": seat.accept_after, "may_accept": seat.may_accept()},
            "pending_delay": None if seat.delay_after is None else {
                "delay": seat.pending_delay, "effective_after": seat.delay_after},
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"ConsortiumRoles {exchange.roles.address} on chain {exchange.chain.chain_id}, "
               f"block {seat.block} at {utc(seat.block_time)}")
    for label, value in (("admin", seat.admin or "(none: the seat was renounced)"),
                         ("delay", f"{seat.delay} s ({span(seat.delay)})"),
                         ("pending admin", _pending_admin(seat)),
                         ("pending delay", _pending_delay(seat))):
        typer.echo(f"{label + ':':<15}{value}")


@seat_app.command("transfer")
def transfer(
    address: Annotated[str, typer.Argument(help="the new admin: 0x and 40 hex digits", show_default=False)],
    calldata: CalldataOpt = False,
) -> None:
    """Begin handing the admin seat to ADDRESS, signed with the admin's METAI_ADMIN_KEY.

    ADDRESS accepts once the delay has passed (`metai-admin admin accept`); until then the admin
    may call it off (`metai-admin admin cancel`). A transfer to the account it is already pending
    for sends nothing: sending it again would start its delay again.
    """
    account = parse_address(address)
    if account == ZERO_ADDRESS:
        raise AdminRefused(
            f"ADDRESS {account} is the zero address: a transfer to it begins renouncing the admin seat, after which "
            "nobody could ever grant or revoke a role again (the contracts would have to be redeployed); metai-admin "
            "does not renounce the seat; give the new admin's address")
    session = Session.open(calldata=calldata)
    seat = read_seat(session.exchange)
    if account == seat.admin:
        kept = (f" (the transfer to {seat.pending_admin} stays pending; `metai-admin admin cancel` calls it off)"
                if seat.pending_admin is not None else "")
        typer.echo(f"{account} is already the consortium admin; nothing sent{kept}")
        return
    if account == seat.pending_admin and seat.accept_after is not None:  # set together; the type checker needs both
        typer.echo(f"a transfer of the admin seat to {account} is already pending, which it may accept after "
                   f"{utc(seat.accept_after)}; nothing sent (sending it again would start its delay again)")
        return
    replacing = f", replacing the pending transfer to {seat.pending_admin}" if seat.pending_admin is not None else ""
    change = Change(
        "beginDefaultAdminTransfer", (account,),
        todo=f"begin the transfer of the admin seat to {account}{replacing} ({account} may accept it "
             f"{seat.delay} s ({span(seat.delay)}) after it is mined)",
        done=f"began the transfer of the admin seat to {account}{replacing}")
    tx = session.submit(change, sender=admin_sender(seat))
    if tx is not None:
        after = tx.event(DefaultAdminTransferScheduled).accept_schedule
        typer.echo(f"{account} may accept after {utc(after)} (in {span(after - _mined_at(session, tx))}): with its "
                   "key as METAI_ADMIN_KEY, `metai-admin admin accept`; a multisig proposes what "
                   "`metai-admin admin accept --calldata` prints")


@seat_app.command("accept")
def accept(calldata: CalldataOpt = False) -> None:
    """Take the admin seat, signed with METAI_ADMIN_KEY, the key of the account it is pending for.

    Refused before sending if no transfer is pending, if it is pending for another account, or
    if its delay has not passed (the message says when it does). With --calldata the delay is
    not waited for: a multisig may collect its signatures meanwhile.
    """
    session = Session.open(calldata=calldata)
    seat = read_seat(session.exchange)
    pending, after = seat.pending_admin, seat.accept_after
    if pending is None or after is None:
        raise AdminRefused(f"no transfer of the admin seat is pending, so there is nothing to accept; the consortium "
                           f"admin ({seat.admin}) begins one with `metai-admin admin transfer ADDRESS`")
    if seat.renouncing:
        raise AdminRefused("the admin is renouncing the seat (a transfer to the zero address), which nobody accepts; "
                           "the admin calls it off with `metai-admin admin cancel`")
    waiting = f"in a block after {utc(after)}, {span(max(after - seat.block_time, 0))} after the latest block " \
              f"(block {seat.block}, at {utc(seat.block_time)})"
    if session.signer is not None:
        if session.signer.address != pending:
            raise AdminRefused(
                f"METAI_ADMIN_KEY is the key of {session.signer.address}, but the admin seat is pending for {pending}; "
                f"set METAI_ADMIN_KEY to the key of {pending}, or, if it is a multisig, run "
                "`metai-admin admin accept --calldata` and propose the transaction there")
        if not seat.may_accept():
            raise AdminRefused(f"the delay of the transfer has not passed: {pending} may accept {waiting}; "
                               "run `metai-admin admin accept` again then")
    session.submit(Change("acceptDefaultAdminTransfer", (), todo=f"accept the admin seat for {pending}",
                          done=f"{pending} accepted the admin seat from {seat.admin}"),
                   sender=f"the pending admin {pending}", when="" if seat.may_accept() else f" {waiting}")


@seat_app.command("cancel")
def cancel(calldata: CalldataOpt = False) -> None:
    """Call off the pending transfer of the admin seat, signed with the admin's METAI_ADMIN_KEY."""
    session = Session.open(calldata=calldata)
    seat = read_seat(session.exchange)
    if seat.pending_admin is None:
        typer.echo("no transfer of the admin seat is pending; nothing sent")
        return
    session.submit(Change("cancelDefaultAdminTransfer", (),
                          todo=f"cancel the transfer of the admin seat to {seat.pending_admin}",
                          done=f"cancelled the transfer of the admin seat to {seat.pending_admin}"),
                   sender=admin_sender(seat))


@seat_app.command("delay")
def delay(
    seconds: Annotated[int, typer.Argument(help="the new delay in seconds (172800: two days)", show_default=False)],
    calldata: CalldataOpt = False,
) -> None:
    """Schedule a new delay between the two steps of a transfer, signed with the admin's METAI_ADMIN_KEY.

    A longer delay takes effect after itself (at most 5 days), a shorter one after the
    difference, so no transfer can be accepted sooner than the old delay allowed. SECONDS equal
    to the current delay calls off a scheduled change.
    """
    if not 0 <= seconds <= MAX_DELAY:
        raise AdminRefused(f"SECONDS {seconds} is out of range; give 0 to {MAX_DELAY} (the contract stores a uint48)")
    session = Session.open(calldata=calldata)
    seat = read_seat(session.exchange)
    if seat.pending_delay == seconds and seat.delay_after is not None:
        typer.echo(f"a change of the admin delay to {seconds} s is already scheduled, effective after "
                   f"{utc(seat.delay_after)}; nothing sent")
        return
    if seconds == seat.delay:
        if seat.pending_delay is None:
            typer.echo(f"the admin delay is already {seconds} s ({span(seconds)}); nothing sent")
            return
        session.submit(Change(
            "rollbackDefaultAdminDelay", (),
            todo=f"call off the scheduled change of the admin delay to {seat.pending_delay} s",
            done=f"called off the scheduled change of the admin delay to {seat.pending_delay} s; it stays "
                 f"{seat.delay} s"), sender=admin_sender(seat))
        return
    replacing = (f", replacing the scheduled change to {seat.pending_delay} s" if seat.pending_delay is not None
                 else "")
    wait = seat.delay_change_wait(seconds)
    tx = session.submit(Change(
        "changeDefaultAdminDelay", (seconds,),
        todo=f"change the admin delay from {seat.delay} s to {seconds} s{replacing}, effective {span(wait)} after "
             "it is mined",
        done=f"scheduled the change of the admin delay from {seat.delay} s to {seconds} s{replacing}"),
        sender=admin_sender(seat))
    if tx is not None:
        after = tx.event(DefaultAdminDelayChangeScheduled).effect_schedule
        typer.echo(f"the delay becomes {seconds} s after {utc(after)} (in {span(after - _mined_at(session, tx))}); "
                   f"a transfer begun before then waits {seat.delay} s")


# ---------------------------------------------------------------------- helpers


def admin_sender(seat: Seat) -> str:
    """Who sends a transaction only the admin may send, in words, for the ``--calldata`` printout."""
    return f"the consortium admin {seat.admin}" if seat.admin else "the consortium admin (none: the seat was renounced)"


def _mined_at(session: Session, tx: TxResult) -> int:
    """The timestamp of the block ``tx`` was mined in: the contract's "now" when it ran."""
    return int(session.exchange.chain.w3.eth.get_block(tx.block_number)["timestamp"])


def _in(seat: Seat, timestamp: int) -> str:
    """How far ``timestamp`` is from the latest block: ``in 2 d``, or ``passed``."""
    return "passed" if timestamp < seat.block_time else f"in {span(timestamp - seat.block_time)}"


def _pending_admin(seat: Seat) -> str:
    if seat.accept_after is None:
        return "(none)"
    if seat.renouncing:
        return f"{ZERO_ADDRESS} (the admin is renouncing the seat), after {utc(seat.accept_after)} " \
               f"({_in(seat, seat.accept_after)})"
    return f"{seat.pending_admin}, may accept after {utc(seat.accept_after)} ({_in(seat, seat.accept_after)})"


def _pending_delay(seat: Seat) -> str:
    if seat.pending_delay is None or seat.delay_after is None:
        return "(none)"
    return (f"{seat.pending_delay} s ({span(seat.pending_delay)}), effective after {utc(seat.delay_after)} "
            f"({_in(seat, seat.delay_after)})")
