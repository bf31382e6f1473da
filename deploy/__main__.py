"""``python -m deploy``: start/stop a local chain, deploy the contracts, run the demo, run federated studies."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
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
from deploy.federation import APP_DIR, Federation, NodeSpec, coordinator_env, parse_node, parse_overrides
from deploy.flower import ConfigValue, RunResult
from deploy.settings import Settings

app = typer.Typer(help="Bring up the MeTAI exchange.", no_args_is_help=True, add_completion=False)
chain_app = typer.Typer(help="A local Anvil chain on 127.0.0.1.", no_args_is_help=True)
app.add_typer(chain_app, name="chain")
federation_app = typer.Typer(
    help="A Flower SuperLink and one SuperNode per hospital node, on 127.0.0.1.", no_args_is_help=True
)
app.add_typer(federation_app, name="federation")
study_app = typer.Typer(help="Federated training of a study (the Flower app of this repository).", no_args_is_help=True)
app.add_typer(study_app, name="study")

NodeOption = Annotated[
    list[str],
    typer.Option(
        "--node",
        help="a hospital node: DIR or DIR=PASSPHRASE_FILE (without a file the node's ClientApp reads "
        "METAI_NODE_PASSPHRASE); repeat for each hospital",
        show_default=False,
    ),
]
StudyIdOption = Annotated[int, typer.Option("--study-id", help="the study's id on chain (it must be RUNNING)")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help=r"key=value overriding \[tool.flwr.app.config]; repeatable", show_default=False),
]
TimeoutOption = Annotated[float, typer.Option(help="seconds the run may take before it is stopped")]
TlsOption = Annotated[bool, typer.Option("--tls", help="TLS and SuperNode authentication (keys made and registered)")]
PortOption = Annotated[int | None, typer.Option(help="the SuperLink's port (default: a free one)")]


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


# ---------------------------------------------------------------------- federated studies


def _federation_dir() -> Path:
    return Settings().run_dir / "federation"


def _nodes(values: list[str]) -> list[NodeSpec]:
    nodes = [parse_node(value) for value in values]
    for node in nodes:
        node.check()
    return nodes


def _describe(federation: Federation) -> None:
    link = federation.superlink
    mode = "TLS, registered SuperNodes only" if federation.tls else "no TLS, any SuperNode admitted"
    typer.echo(f"SuperLink pid {link.pid} on {link.control_address} ({mode}); log {link.log_file}")
    for node in federation.supernodes:
        typer.echo(f"SuperNode {node.name} pid {node.pid}, node id {node.node_id}; log {node.log_file}")


def _launch(
    federation: Federation,
    study_id: int,
    run_config: dict[str, ConfigValue],
    timeout: float,
    env: Mapping[str, str] | None,
) -> RunResult:
    started = time.monotonic()
    done = threading.Event()
    if env is not None:
        threading.Thread(target=_watch_rounds, args=(env, study_id, done), daemon=True).start()

    def submitted(run_id: int) -> None:
        typer.echo(f"run {run_id} of study {study_id} submitted; ServerApp log: {federation.run_log(run_id)}")

    def line(text: str) -> None:
        if text.strip():
            typer.echo(f"  | {text}")

    try:
        result = federation.launch(study_id, run_config, timeout=timeout, on_submitted=submitted, on_log=line)
    finally:
        done.set()
    typer.echo(f"run {result.run_id} ended {result.status} after {time.monotonic() - started:.0f} s")
    return result


def _watch_rounds(env: Mapping[str, str], study_id: int, done: threading.Event) -> None:
    """Print a line each time the chain records another round of the study (the ServerApp anchors each one)."""
    from contracts.exchange import Exchange

    try:
        manifest = Path(env["METAI_COORDINATOR_MANIFEST"])
        studies = Exchange.connect(env["METAI_COORDINATOR_RPC_URL"], manifest).studies
        seen = studies.study(study_id).rounds_completed
        while not done.wait(2.0):
            record = studies.study(study_id)
            if record.rounds_completed != seen:
                seen = record.rounds_completed
                typer.echo(f"round {seen} of {record.rounds} anchored on chain (study {study_id} {record.status.name})")
    except Exception as exc:  # progress only: the run goes on, and its own outcome is reported
        typer.echo(f"(no round progress from the chain: {type(exc).__name__}: {exc})")


def _model_dir(env: dict[str, str], study_id: int) -> str:
    return str(Path(env["METAI_COORDINATOR_MODEL_DIR"]) / f"study-{study_id}")


def _guarded(work: Callable[[], None], cleanup: Callable[[], None] | None = None) -> None:
    """Run ``work``; deploy and settings errors exit 1 in red, Ctrl-C exits 130; ``cleanup`` runs always."""
    try:
        work()
    except (DeployError, ValueError, KeyError) as exc:
        raise _fail(exc) from exc
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(130) from None
    finally:
        if cleanup is not None:
            cleanup()


@federation_app.command("up")
def federation_up(
    node: NodeOption,
    tls: TlsOption = False,
    port: PortOption = None,
) -> None:
    """Start a SuperLink and one SuperNode per --node, and leave them running for `study launch`.

    The ServerApp reads the coordinator's METAI_COORDINATOR_* settings (environment or .env)
    as they are now; bring the federation down and up again to change them.
    """

    def work() -> None:
        nodes = _nodes(node)
        env = coordinator_env()
        federation = Federation.up(_federation_dir(), nodes, tls=tls, coordinator_env=env, port=port)
        _describe(federation)
        typer.echo(f"federation up in {federation.run_dir}; launch with `python -m deploy study launch --study-id N`")

    _guarded(work)


@federation_app.command("status")
def federation_status() -> None:
    """Show the recorded federation's processes; exit 1 if none is recorded or one is not running."""

    def work() -> None:
        federation = Federation.load(_federation_dir())
        members = federation.status()
        for member in members:
            state = "running" if member.running else "NOT RUNNING"
            where = f"on {member.address}; log {member.log_file}"
            typer.echo(f"{member.role} {member.name}: pid {member.pid} {state} {where}")
        if not all(member.running for member in members):
            raise typer.Exit(1)

    _guarded(work)


@federation_app.command("down")
def federation_down() -> None:
    """Stop the recorded federation's SuperNodes and SuperLink (their logs stay)."""

    def work() -> None:
        federation = Federation.load(_federation_dir())
        federation.down()
        typer.echo(f"federation down; logs stay in {federation.run_dir}")

    _guarded(work)


@study_app.command("run")
def study_run(
    study_id: StudyIdOption,
    node: NodeOption,
    tls: TlsOption = False,
    set_: SetOption = None,
    timeout: TimeoutOption = 3600.0,
    port: PortOption = None,
) -> None:
    """Bring a federation up, run study --study-id on it to the end, and bring it down (also on Ctrl-C or failure)."""
    federation: list[Federation] = []

    def work() -> None:
        nodes = _nodes(node)
        run_config = parse_overrides(APP_DIR, set_ or [])  # refused before anything starts
        env = coordinator_env()
        federation.append(Federation.up(_federation_dir(), nodes, tls=tls, coordinator_env=env, port=port))
        _describe(federation[0])
        _launch(federation[0], study_id, run_config, timeout, env)
        typer.echo(f"models in {_model_dir(env, study_id)}")

    def down() -> None:
        if federation:
            federation[0].down()
            typer.echo(f"federation down; logs stay in {federation[0].run_dir}")

    _guarded(work, down)


@study_app.command("launch")
def study_launch(study_id: StudyIdOption, set_: SetOption = None, timeout: TimeoutOption = 3600.0) -> None:
    """Run study --study-id on the federation `federation up` started, and follow it to the end.

    Ctrl-C stops the run (not the federation).
    """

    def work() -> None:
        federation = Federation.load(_federation_dir())
        run_config = parse_overrides(federation.app_dir, set_ or [])
        try:
            env: dict[str, str] | None = coordinator_env()
        except DeployError:  # the ServerApp has the settings the federation was started with; these are for progress
            env = None
        result = _launch(federation, study_id, run_config, timeout, env)
        typer.echo(f"ServerApp log: {result.log_file}")

    _guarded(work)


@study_app.command("simulate")
def study_simulate(study_id: StudyIdOption, node: NodeOption, set_: SetOption = None) -> None:
    """Run study --study-id on Flower's simulation engine (Ray, in this process): one virtual SuperNode per --node.

    Each --node needs its passphrase file (DIR=PASSPHRASE_FILE).
    """
    from deploy.simulation import simulate, simulation_env  # imports flwr and, when run, Ray

    def work() -> None:
        nodes = _nodes(node)
        simulation_env(nodes)  # each node has its passphrase file
        env = coordinator_env()
        run_config = parse_overrides(APP_DIR, set_ or [])
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("  | %(message)s"))
        logging.getLogger("metai").addHandler(handler)
        logging.getLogger("metai").setLevel(logging.INFO)
        result = simulate(nodes, study_id, run_config, coordinator_env=env)
        typer.echo(f"simulation of study {study_id} finished after {result.seconds:.0f} s")
        typer.echo(f"models in {_model_dir(env, study_id)}")

    _guarded(work)


if __name__ == "__main__":
    app()
