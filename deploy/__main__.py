"""``python -m deploy``: start/stop a local chain, deploy the contracts, run the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from eth_account import Account

from contracts.chain import Chain
from contracts.errors import ChainError
from contracts.manifest import write_manifest
from contracts.roles import Role
from deploy.anvil import AnvilNode, start_anvil, stop_anvil
from deploy.deployer import deploy_contracts
from deploy.errors import DeployError
from deploy.settings import Settings

app = typer.Typer(help="Bring up the MeTAI exchange.", no_args_is_help=True, add_completion=False)
chain_app = typer.Typer(help="A local Anvil chain on 127.0.0.1.", no_args_is_help=True)
app.add_typer(chain_app, name="chain")


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@chain_app.command("start")
def chain_start(
    state: Annotated[Path | None, typer.Option(help="state file: loaded if present, saved on stop")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: a free one)")] = None,
) -> None:
    """Start Anvil in the background; its details go to <run_dir>/chain/anvil.json."""
    settings = Settings()
    chain_dir = settings.run_dir / "chain"
    try:
        node = start_anvil(chain_dir, port=port, state_file=state or chain_dir / "state.json")
    except DeployError as exc:
        raise _fail(exc) from exc
    typer.echo(f"anvil pid {node.pid} listening on {node.rpc_url} (chain id {node.chain_id})")
    typer.echo(f"export METAI_RPC_URL={node.rpc_url}")


@chain_app.command("stop")
def chain_stop() -> None:
    """Stop the Anvil started by `chain start` (its state is saved)."""
    info = Settings().run_dir / "chain" / "anvil.json"
    if not info.exists():
        raise _fail(FileNotFoundError(f"no running chain recorded in {info}"))
    node = AnvilNode.from_json(info.read_text(encoding="utf-8"))
    stop_anvil(node)
    info.unlink()
    typer.echo(f"stopped anvil pid {node.pid}")


@app.command("contracts")
def contracts_cmd() -> None:
    """Deploy the contracts to METAI_RPC_URL as METAI_ADMIN_KEY and write the manifest."""
    settings = Settings()
    try:
        chain = Chain(settings.require_rpc_url())
        admin = Account.from_key(settings.require_admin_key())
        roles = [(Role.HOSPITAL, a) for a in settings.hospitals]
        roles += [(Role.RESEARCHER, a) for a in settings.researchers]
        if settings.coordinator:
            roles.append((Role.COORDINATOR, settings.coordinator))
        deployment = deploy_contracts(chain, admin, initial_roles=roles, progress=typer.echo)
        write_manifest(deployment, settings.manifest_path())
    except (DeployError, ChainError) as exc:
        raise _fail(exc) from exc
    typer.echo(f"manifest written to {settings.manifest_path()}")


@app.command("demo")
def demo() -> None:
    """Run the end-to-end demo on a fresh local chain."""
    from deploy.demo import run_demo  # heavy imports only for this command

    settings = Settings()
    try:
        code = run_demo(settings.run_dir / "demo")
    except (DeployError, ChainError) as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)


if __name__ == "__main__":
    app()
