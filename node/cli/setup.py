"""Setting a node up and looking at it: ``init``, ``status``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from contracts.errors import InvalidRpcUrl
from node.cli.common import inputs_exist, open_node, out, passphrase, settings
from node.config import NodeInfo
from node.errors import NodeConfigError

if TYPE_CHECKING:
    from node.gas import GasFunding
    from node.node import Node


@inputs_exist("manifest", "key_file")
def init(
    name: Annotated[str, typer.Option(help="the hospital's display name")],
    manifest: Annotated[Path, typer.Option(help="the consortium's deployment manifest")],
    rpc_url: Annotated[str, typer.Option(help="the chain's JSON-RPC URL")] = "",
    key_file: Annotated[Path | None, typer.Option(help="import this hex private key instead of creating one")] = None,
) -> None:
    """Create the node directory (METAI_NODE_DIR) with an encrypted hospital key."""
    from contracts.endpoint import check_rpc_url
    from node.node import Node

    current = settings()
    if rpc_url:
        try:
            rpc_url = check_rpc_url(rpc_url)
        except InvalidRpcUrl as exc:
            raise NodeConfigError(f"--rpc-url {exc}") from None
    key = key_file.read_text(encoding="utf-8").strip() if key_file else None
    node = Node.init(current.dir, hospital_name=name, rpc_url=rpc_url, manifest=manifest,
                     passphrase=passphrase(current, confirm=True), private_key=key)
    out().print(f"node created in {escape(str(node.dir))}; hospital address [bold]{node.address}[/]")
    out().print("ask the consortium admin to grant this address the HOSPITAL role")


def status() -> None:
    """Show the node: hospital, chain, role, records, patients, datasets, and whether its balance pays for the
    next round contributions (a warning on stderr if not; exit 1 if the chain is unreachable)."""
    node = open_node()
    from contracts.roles import Role
    from node.status import catalog_summary

    rounds = settings().gas_rounds
    out().print(f"node {node.dir}: {node.info.hospital_name} ({node.address})", markup=False)
    summary = catalog_summary(node)
    counts = ", ".join(f"{kind.name}: {n}" for kind, n in summary.records_by_kind.items()) or "none"
    out().print(f"records: {counts}; patients: {summary.patients} ({summary.enrolled} enrolled); "
                f"registered datasets: {summary.registered_datasets}")
    holds = node.exchange.roles.has(Role.HOSPITAL, node.address)  # a chain that is down: the boundary's one line
    out().print(f"chain {escape(node.rpc_url)}: block {node.exchange.chain.block_number}, "
                f"HOSPITAL role {'held' if holds else '[red]not held[/]'}")
    _gas(node, summary.registered_datasets, rounds)


def _gas(node: Node, datasets: int, rounds: int | None) -> None:
    """Print the hospital account's balance against its next contributions; warn when it falls short."""
    from node.gas import ether, gas_funding, gwei

    funding = gas_funding(node, datasets=datasets, rounds=rounds)
    fee = funding.fee
    print_ = functools.partial(out().print, markup=False, highlight=False)
    print_(f"hospital account {funding.address}: {ether(funding.balance)} ({funding.balance} wei) "
           f"at block {funding.block}")
    price = f"gas price: {gwei(fee.per_gas)} per gas ({fee.per_gas} wei"
    if fee.base_fee is not None and fee.tip is not None:
        price += f": base fee {gwei(fee.base_fee)} + tip {gwei(fee.tip)}); fee cap {gwei(fee.max_per_gas)}"
    print_(price + ("" if fee.base_fee is not None else ")"))
    named = f"{funding.datasets} registered datasets" if funding.datasets > 1 else "one registered dataset"
    cost = funding.contribution_cost
    print_(f"one round contribution naming {named}: {funding.contribution_gas:,} gas = {ether(cost)} ({cost} wei); "
           f"sent with a gas limit of {funding.gas_limit:,}")
    affordable = funding.affordable
    n = funding.contributions
    if affordable is None:
        print_("gas is free on this chain (price 0): the balance pays for any number of contributions")
        return
    print_(f"the balance pays for {affordable:,} contribution{'s' if affordable != 1 else ''}; "
           f"the next {n} ({_ahead(funding)}) need {ether(funding.needed)} ({funding.needed} wei)")
    if funding.shortfall:
        typer.secho(f"warning: the hospital account cannot pay for the next {n} contribution{'s' if n != 1 else ''}: "
                    f"it is short of {ether(funding.shortfall)}; send at least {funding.shortfall} wei to "
                    f"{funding.address} on chain {funding.chain_id} (docs/node.md#gas)", fg="yellow", err=True)


def _ahead(funding: GasFunding) -> str:
    """Where the number of contributions checked comes from, in words."""
    if funding.from_setting:
        return "METAI_NODE_GAS_ROUNDS"
    if not funding.studies:
        return "no approved study awaits one; at least one is checked"
    return "; ".join(f"study {s.study_id}: {s.rounds} round{'s' if s.rounds != 1 else ''} left"
                     f"{'' if s.running else ', awaiting its start'}" for s in funding.studies)


def federation_key(
    out_file: Annotated[Path | None, typer.Option("--out", help="also write the public key to this file")] = None,
) -> None:
    """Print this hospital's SuperNode public key, for the coordinator operator to register.

    The key pair is made on first use in <node>/federation/ (supernode.key, mode 0600, and
    supernode.pub) and kept: the private key never leaves this host, the SuperNode reads it
    (--auth-supernode-private-key). Standard output is the one public key line only.
    """
    current = settings()
    try:
        NodeInfo.load(current.dir)
    except NodeConfigError as exc:
        raise NodeConfigError(f"{exc}; the node directory is METAI_NODE_DIR") from None
    from node.federation_key import federation_key as make_or_read

    key = make_or_read(current.dir)
    typer.echo(key.public_line)
    if out_file is not None:
        out_file.write_text(key.public_line + "\n", encoding="utf-8")
    what = "made a new SuperNode key pair" if key.created else "the SuperNode key pair kept"
    typer.echo(f"{what}: private {key.private_key} (stays here), public {key.public_key}; the coordinator operator "
               "registers the public key (`metai-coordinator supernode register`)", err=True)
