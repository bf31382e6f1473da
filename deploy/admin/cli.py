"""The commands of ``metai-admin``: ``roles grant``, ``roles revoke``, ``roles list``.

Arguments are checked before the settings are read, and the settings and the chain before
anything is sent. A change that would change nothing (granting a role already held, revoking
one not held) sends nothing and exits 0, so a script can run it again safely. Revoking the
admin role from the last admin is refused unless ``--force`` is given.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from contracts.enums import Role
from contracts.errors import ChainUnavailable
from deploy.admin.roles import Holder, other_admins, parse_address, parse_role, read_holders, role_label
from deploy.errors import AdminRefused, SettingsError
from deploy.settings import Settings
from node.cli.boundary import Boundary

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from contracts.chain import TxResult
    from contracts.exchange import Exchange


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, ChainUnavailable):
        return "check METAI_RPC_URL"
    return None


BOUNDARY = Boundary(settings=(Settings,), hints=(_hint,))


def _typer(help_text: str, **kwargs: object) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_show_locals=False, **kwargs)  # type: ignore[arg-type]


app = _typer("Administer the MeTAI consortium on chain, as the consortium admin (METAI_ADMIN_KEY).",
             cls=BOUNDARY.group())
roles_app = _typer("Who is a hospital, a researcher, the coordinator or an admin (ConsortiumRoles).")
app.add_typer(roles_app, name="roles")

RoleArg = Annotated[str, typer.Argument(help="admin, hospital, researcher or coordinator (any case)",
                                        show_default=False)]
AddressArg = Annotated[str, typer.Argument(help="the account: 0x and 40 hex digits",
                                           show_default=False)]


@roles_app.command("grant")
def grant(role: RoleArg, address: AddressArg) -> None:
    """Give ROLE to ADDRESS, signed with METAI_ADMIN_KEY; nothing is sent if ADDRESS holds it already.

    ROLE: admin, hospital, researcher or coordinator (any case). ADDRESS: 0x and 40 hex digits.
    """
    wanted, account = parse_role(role), parse_address(address)
    exchange, admin = _signing()
    if exchange.roles.has(wanted, account):
        typer.echo(f"{account} already holds the {role_label(wanted.value)} role; nothing sent")
        return
    _sent(f"granted {role_label(wanted.value)} to {account}", admin, exchange.roles.grant(admin, wanted, account))


@roles_app.command("revoke")
def revoke(
    role: RoleArg,
    address: AddressArg,
    force: Annotated[bool, typer.Option("--force", help="revoke the admin role even from the last admin")] = False,
) -> None:
    """Take ROLE from ADDRESS, signed with METAI_ADMIN_KEY; nothing is sent if ADDRESS does not hold it.

    ROLE: admin, hospital, researcher or coordinator (any case). Taking the admin role from the
    last admin needs --force: nobody could change any role afterwards.
    """
    wanted, account = parse_role(role), parse_address(address)
    exchange, admin = _signing()
    if not exchange.roles.has(wanted, account):
        typer.echo(f"{account} does not hold the {role_label(wanted.value)} role; nothing sent")
        return
    if wanted is Role.CONSORTIUM_ADMIN and not other_admins(read_holders(exchange), account):
        danger = f"{account} is the last consortium admin: without one, no role can ever be granted or revoked again"
        if not force:
            raise AdminRefused(f"{danger}; grant the admin role to another account first, or pass --force")
        typer.secho(f"warning: {danger} (--force given)", fg="yellow", err=True)
    _sent(f"revoked {role_label(wanted.value)} from {account}", admin, exchange.roles.revoke(admin, wanted, account))


@roles_app.command("list")
def list_roles(
    role: Annotated[str | None, typer.Argument(help="only this role", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of a table")] = False,
) -> None:
    """Show who holds each role (or only ROLE) now: read from the role events, each confirmed with hasRole."""
    wanted = parse_role(role) if role is not None else None
    exchange = _exchange(Settings())
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


def _exchange(settings: Settings) -> Exchange:
    """The deployment of METAI_MANIFEST on METAI_RPC_URL."""
    rpc_url = settings.require_rpc_url()
    manifest = settings.manifest_path()
    if not manifest.is_file():
        raise SettingsError(f"no deployment manifest at {manifest}; set METAI_MANIFEST to the file "
                            "`python -m deploy contracts` wrote (default: $METAI_RUN_DIR/deployment.json)")
    from contracts.exchange import Exchange  # web3: only once the settings are right

    return Exchange.connect(rpc_url, manifest)


def _signing() -> tuple[Exchange, LocalAccount]:
    """The deployment and the admin account of METAI_ADMIN_KEY, which must be able to pay for gas."""
    settings = Settings()
    key = settings.require_admin_key()
    exchange = _exchange(settings)
    from eth_account import Account

    admin: LocalAccount = Account.from_key(key)
    if exchange.chain.balance(admin.address) == 0:
        raise SettingsError(
            f"the admin account {admin.address} (METAI_ADMIN_KEY) holds no ether on {exchange.chain.rpc_url}, so it "
            "cannot pay for the transaction; fund it, or set METAI_ADMIN_KEY to the consortium admin's key"
        )
    return exchange, admin


def _sent(what: str, admin: LocalAccount, tx: TxResult) -> None:
    typer.echo(f"{what}: transaction {tx.tx_hash} in block {tx.block_number} (signed by {admin.address})")


def _table(shown: dict[str, list[Holder]]) -> list[str]:
    """Rows of role, account, the block it was granted in and by whom; ``(none)`` for a role nobody holds."""
    rows = [("role", "account", "granted in block", "granted by")]
    for name, holders in shown.items():
        rows += [(name, h.account, str(h.granted_block), h.granted_by) for h in holders] or [(name, "(none)", "", "")]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]]) for row in rows]
