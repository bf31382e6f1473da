"""Setting a node up and looking at it: ``init``, ``status``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from contracts.errors import InvalidRpcUrl
from node.cli.common import inputs_exist, open_node, out, passphrase, settings
from node.errors import NodeConfigError


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
    """Show the node: hospital, chain, role, records, patients, datasets (exit 1 if the chain is unreachable)."""
    node = open_node()
    from contracts.roles import Role
    from node.status import catalog_summary

    out().print(f"node {node.dir}: {node.info.hospital_name} ({node.address})", markup=False)
    summary = catalog_summary(node)
    counts = ", ".join(f"{kind.name}: {n}" for kind, n in summary.records_by_kind.items()) or "none"
    out().print(f"records: {counts}; patients: {summary.patients} ({summary.enrolled} enrolled); "
                f"registered datasets: {summary.registered_datasets}")
    holds = node.exchange.roles.has(Role.HOSPITAL, node.address)  # a chain that is down: the boundary's one line
    out().print(f"chain {escape(node.rpc_url)}: block {node.exchange.chain.block_number}, "
                f"HOSPITAL role {'held' if holds else '[red]not held[/]'}")
