"""The commands of ``metai-admin``: ``roles grant|revoke|list`` and ``admin status|transfer|accept|cancel|delay``.

Arguments are checked before the settings are read, and the settings and the chain before
anything is sent. A change that would change nothing (granting a role already held, revoking
one not held) sends nothing and exits 0, so a script can run it again safely. The admin role is
not granted or revoked like the others: it is the admin seat, which moves with the ``admin``
commands (:mod:`deploy.admin.seat_cli`). Every command that sends can print its transaction
instead (``--calldata``), for an admin that is a multisig.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated, Any

import typer

from contracts.enums import Role
from contracts.errors import ChainUnavailable
from deploy.admin.roles import (
    Holder,
    conflicting_roles,
    parse_address,
    parse_role,
    read_holders,
    role_label,
)
from deploy.admin.seat import read_seat
from deploy.admin.seat_cli import admin_sender, seat_app
from deploy.admin.session import CalldataOpt, Change, Session, connect
from deploy.errors import AdminRefused
from deploy.settings import Settings
from node.cli.boundary import Boundary


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, ChainUnavailable):
        return "check METAI_RPC_URL"
    values: Any = getattr(exc, "values", None)
    if (getattr(exc, "error", None) == "AccessControlUnauthorizedAccount" and isinstance(values, dict)
            and values.get("neededRole") == Role.CONSORTIUM_ADMIN.value):
        # Not the generic "ask the admin to grant you the role": the admin seat is never granted.
        return ("only the consortium admin may do this: set METAI_ADMIN_KEY to its key, or, if the admin is a "
                "multisig, add --calldata and propose the transaction there (`metai-admin admin status` names it)")
    return None


BOUNDARY = Boundary(settings=(Settings,), hints=(_hint,))


def _typer(help_text: str, **kwargs: object) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_show_locals=False, **kwargs)  # type: ignore[arg-type]


app = _typer("Administer the MeTAI consortium on chain, as the consortium admin (METAI_ADMIN_KEY).",
             cls=BOUNDARY.group())
roles_app = _typer("Who is a hospital, a researcher, the coordinator or the admin (ConsortiumRoles).")
app.add_typer(roles_app, name="roles")
app.add_typer(seat_app, name="admin")

RoleArg = Annotated[str, typer.Argument(help="hospital, researcher or coordinator (any case)",
                                        show_default=False)]
AddressArg = Annotated[str, typer.Argument(help="the account: 0x and 40 hex digits",
                                           show_default=False)]


@roles_app.command("grant")
def grant(role: RoleArg, address: AddressArg, calldata: CalldataOpt = False) -> None:
    """Give ROLE to ADDRESS, signed with METAI_ADMIN_KEY; nothing is sent if ADDRESS holds it already.

    ROLE: hospital, researcher or coordinator (any case). ADDRESS: 0x and 40 hex digits. The
    coordinator role is held alone: it is refused to an account holding hospital or researcher,
    and those to the coordinator. The admin seat moves with `metai-admin admin transfer`.
    """
    wanted, account = parse_role(role), parse_address(address)
    if wanted is Role.CONSORTIUM_ADMIN:
        raise AdminRefused(
            "the admin role is not granted: ConsortiumRoles has exactly one admin, and the seat moves in two steps; "
            f"run `metai-admin admin transfer {account}`, and once the delay has passed {account} runs "
            "`metai-admin admin accept`")
    session = Session.open(calldata=calldata)
    exchange = session.exchange
    name = role_label(wanted.value)
    if exchange.roles.has(wanted, account):
        typer.echo(f"{account} already holds the {name} role; nothing sent")
        return
    if held := conflicting_roles(exchange, wanted, account):
        raise AdminRefused(_conflict(account, wanted, held))
    session.submit(Change("grantRole", (wanted.value, account), f"grant {name} to {account}",
                          f"granted {name} to {account}"), sender=_admin_phrase(session))


@roles_app.command("revoke")
def revoke(role: RoleArg, address: AddressArg, calldata: CalldataOpt = False) -> None:
    """Take ROLE from ADDRESS, signed with METAI_ADMIN_KEY; nothing is sent if ADDRESS does not hold it.

    ROLE: hospital, researcher or coordinator (any case). The admin seat is never left empty:
    hand it to another account with `metai-admin admin transfer`.
    """
    wanted, account = parse_role(role), parse_address(address)
    if wanted is Role.CONSORTIUM_ADMIN:
        raise AdminRefused(
            "the admin role is not revoked: ConsortiumRoles always has exactly one admin; to hand the seat to another "
            "account, run `metai-admin admin transfer ADDRESS`, and that account accepts once the delay has passed")
    session = Session.open(calldata=calldata)
    name = role_label(wanted.value)
    if not session.exchange.roles.has(wanted, account):
        typer.echo(f"{account} does not hold the {name} role; nothing sent")
        return
    session.submit(Change("revokeRole", (wanted.value, account), f"revoke {name} from {account}",
                          f"revoked {name} from {account}"), sender=_admin_phrase(session))


@roles_app.command("list")
def list_roles(
    role: Annotated[str | None, typer.Argument(help="only this role (admin, hospital, researcher, coordinator)",
                                               show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of a table")] = False,
) -> None:
    """Show who holds each role (or only ROLE) now: read from the role events, each confirmed with hasRole."""
    wanted = parse_role(role) if role is not None else None
    exchange = connect(Settings())
    found = read_holders(exchange)
    for line in found.disagreements:
        typer.secho(f"warning: {line}", fg="yellow", err=True)
    shown = {role_label(r): hs for r, hs in found.holders.items() if wanted is None or r == wanted.value}
    if as_json:
        document: dict[str, Any] = {
            "chain_id": exchange.chain.chain_id,
            "contract": exchange.roles.address,
            "block": found.block,
            "roles": {name: [dataclasses.asdict(h) for h in holders] for name, holders in shown.items()},
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(f"ConsortiumRoles {exchange.roles.address} on chain {exchange.chain.chain_id}, block {found.block}")
    for line in _table(shown):
        typer.echo(line.rstrip())


# ---------------------------------------------------------------------- helpers


def _conflict(account: str, wanted: Role, held: list[Role]) -> str:
    """Why ``account`` may not be given ``wanted`` on top of ``held``, and what to do."""
    names = " and ".join(role_label(r.value) for r in held)
    plural = "s" if len(held) > 1 else ""
    why = "the coordinator starts studies and records the rounds hospitals contribute, so it holds no other role"
    return (f"{account} holds the {names} role{plural}, which cannot be combined with the {role_label(wanted.value)} "
            f"role ({why}); revoke the {names} role{plural} from {account} first, or choose another account")


def _admin_phrase(session: Session) -> str:
    """Who sends a role change with --calldata: the consortium admin, named."""
    if session.signer is not None:
        return "the consortium admin"  # not printed: the key signs, and the contract checks it is the admin's
    return admin_sender(read_seat(session.exchange))


def _table(shown: dict[str, list[Holder]]) -> list[str]:
    """Rows of role, account, the block it was granted in and by whom; ``(none)`` for a role nobody holds."""
    rows = [("role", "account", "granted in block", "granted by")]
    for name, holders in shown.items():
        rows += [(name, h.account, str(h.granted_block), h.granted_by) for h in holders] or [(name, "(none)", "", "")]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]) for row in rows]
