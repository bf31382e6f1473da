"""``python -m deploy``: start/stop a local chain, deploy the contracts, run the demo, run federated studies.

Every command runs inside one error boundary (:mod:`node.cli.boundary`): one ``error: ...``
line on stderr and a non-zero exit code, never a traceback or a secret. The study commands
check what can be checked (keys, passphrases, chain, the study's state, the task) before they
start anything (:mod:`deploy.preflight`). Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from contracts.errors import ChainUnavailable
from coordinator.core.config import CoordinatorSettings
from coordinator.run_config import RunConfigName
from coordinator.study_log import study_folder
from deploy.certs import certs_app
from deploy.errors import SettingsError
from deploy.settings import Settings
from node.cli.boundary import Boundary
from node.config import NodeSettings
from node.exit_codes import ExitCode

if TYPE_CHECKING:
    from deploy.federation import Federation, NodeSpec
    from deploy.flower import ConfigValue, RunResult


def _hint(exc: BaseException) -> str | None:
    if isinstance(exc, ChainUnavailable):
        return "check METAI_RPC_URL / METAI_COORDINATOR_RPC_URL (and a node's METAI_NODE_RPC_URL or node.json)"
    return None


BOUNDARY = Boundary(settings=(Settings, CoordinatorSettings, NodeSettings), hints=(_hint,))


def _typer(help_text: str, **kwargs: object) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False,
                       pretty_exceptions_show_locals=False, **kwargs)  # type: ignore[arg-type]


app = _typer("Bring up the MeTAI exchange.", cls=BOUNDARY.group())
chain_app = _typer("A local Anvil chain on 127.0.0.1.")
app.add_typer(chain_app, name="chain")
federation_app = _typer("A Flower SuperLink and one SuperNode per hospital node, on 127.0.0.1.")
app.add_typer(federation_app, name="federation")
study_app = _typer("Federated training of a study (the Flower app of this repository).")
app.add_typer(study_app, name="study")
app.add_typer(certs_app, name="certs")

NodeOption = Annotated[
    list[str],
    typer.Option(
        "--node",
        help="a hospital node: DIR or DIR=PASSPHRASE_FILE (without a file the node's ClientApp reads "
        "METAI_NODE_PASSPHRASE); repeat for each hospital",
        show_default=False,
    ),
]
StudyIdOption = Annotated[int, typer.Option("--study-id", min=1, help="the study's id on chain (it must be RUNNING)")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help=r"key=value overriding \[tool.flwr.app.config]; repeatable", show_default=False),
]
TimeoutOption = Annotated[float, typer.Option(help="seconds the run may take before it is stopped")]
TlsOption = Annotated[bool, typer.Option("--tls", help="TLS and SuperNode authentication (keys made and registered)")]
PortOption = Annotated[int | None, typer.Option(help="the SuperLink's port (default: a free one)")]


@chain_app.command("start")
def chain_start(
    state: Annotated[Path | None, typer.Option(help="state file: loaded if present, saved on stop")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: a free one)")] = None,
) -> None:
    """Start Anvil in the background; its details go to <run_dir>/chain/anvil.json."""
    from deploy.anvil import start_anvil

    chain_dir = Settings().run_dir / "chain"
    node = start_anvil(chain_dir, port=port, state_file=state or chain_dir / "state.json")
    typer.echo(f"anvil pid {node.pid} listening on {node.rpc_url} (chain id {node.chain_id})")
    typer.echo(f"export METAI_RPC_URL={node.rpc_url}")


@chain_app.command("stop")
def chain_stop() -> None:
    """Stop the Anvil started by `chain start` (its state is saved)."""
    from deploy.anvil import AnvilNode, stop_anvil

    info = Settings().run_dir / "chain" / "anvil.json"
    if not info.exists():
        raise SettingsError(f"no running chain recorded in {info}; start one with `python -m deploy chain start` "
                            "(with the same METAI_RUN_DIR)")
    node = AnvilNode.from_json(info.read_text(encoding="utf-8"))
    stop_anvil(node)
    info.unlink()
    typer.echo(f"stopped anvil pid {node.pid}")


@app.command("contracts")
def contracts_cmd() -> None:
    """Deploy the contracts to METAI_RPC_URL as METAI_ADMIN_KEY and write the manifest."""
    from eth_account import Account

    from contracts.chain import Chain
    from contracts.manifest import write_manifest
    from contracts.roles import Role
    from deploy.deployer import deploy_contracts

    settings = Settings()
    admin = Account.from_key(settings.require_admin_key())
    chain = Chain(settings.require_rpc_url())
    if chain.balance(admin.address) == 0:
        raise SettingsError(
            f"the admin account {admin.address} (METAI_ADMIN_KEY) holds no ether on {chain.rpc_url}, so it cannot "
            "pay for the deployment; fund it, or set METAI_ADMIN_KEY to the consortium admin's key"
        )
    roles = [(Role.HOSPITAL, a) for a in settings.hospitals]
    roles += [(Role.RESEARCHER, a) for a in settings.researchers]
    if settings.coordinator:
        roles.append((Role.COORDINATOR, settings.coordinator))
    deployment = deploy_contracts(chain, admin, initial_roles=roles, admin_delay=settings.admin_delay,
                                  progress=typer.echo)
    write_manifest(deployment, settings.manifest_path())
    typer.echo(f"manifest written to {settings.manifest_path()}")


@app.command("demo")
def demo(
    serve: Annotated[bool, typer.Option("--serve", help="leave the coordinator service (portal) and the chain "
                                        "running at the end; the demo says how to stop them")] = False,
) -> None:
    """Run the end-to-end demo on a fresh local chain, through the coordinator service's API."""
    from deploy.demo import run_demo  # heavy imports only for this command

    run_dir = Settings().run_dir / "demo"
    run_dir.mkdir(parents=True, exist_ok=True)  # an unusable METAI_RUN_DIR is refused before anything starts
    raise typer.Exit(run_demo(run_dir, serve=serve))


# ---------------------------------------------------------------------- federated studies


def _federation_dir() -> Path:
    return Settings().run_dir / "federation"


def _nodes(values: list[str]) -> list[NodeSpec]:
    from deploy.federation import parse_node

    nodes = [parse_node(value) for value in values]
    for node in nodes:
        node.check()
    return nodes


def _overrides(app_dir: Path, items: list[str] | None) -> dict[str, ConfigValue]:
    from deploy.federation import parse_overrides
    from deploy.preflight import PreflightError

    try:
        return parse_overrides(app_dir, items or [])
    except ValueError as exc:  # a malformed --set is the user's, not a bug
        raise PreflightError(str(exc)) from None


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
    return str(study_folder(Path(env["METAI_COORDINATOR_MODEL_DIR"]), study_id))


def _ready_to_run(study_id: int | None, node: list[str], set_: list[str] | None) -> tuple[
        list[NodeSpec], dict[str, ConfigValue], dict[str, str]]:
    """Check everything a federation or run needs before anything starts; return nodes, run config, coordinator env.

    Nodes (directories, passphrase files), ``--set`` overrides, the coordinator's settings, key
    and passphrase, its chain and role, the study's state (``study_id``), each node's
    passphrase, chain and participation, and the task code the study was approved for.
    """
    from deploy.federation import APP_DIR, coordinator_env
    from deploy.flower import read_app_config
    from deploy.preflight import check_coordinator, check_min_nodes, check_nodes, check_study, check_task

    nodes = _nodes(node)
    run_config = _overrides(APP_DIR, set_)
    config = {**read_app_config(APP_DIR), **run_config}  # what the apps will see
    if study_id is not None:
        check_min_nodes(int(config[RunConfigName.MIN_NODES]), len(nodes))
    coordinator = check_coordinator()
    study = check_study(coordinator.exchange, study_id) if study_id is not None else None
    check_nodes(nodes, study, coordinator)
    if study is not None:
        check_task(study, str(config[RunConfigName.TASK]))
    return nodes, run_config, coordinator_env(coordinator.settings)


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
    from deploy.federation import Federation

    nodes, _, env = _ready_to_run(None, node, None)
    federation = Federation.up(_federation_dir(), nodes, tls=tls, coordinator_env=env, port=port)
    _describe(federation)
    typer.echo(f"federation up in {federation.run_dir}; launch with `python -m deploy study launch --study-id N`")


@federation_app.command("status")
def federation_status() -> None:
    """Show the recorded federation's processes; exit 1 if none is recorded or one is not running."""
    from deploy.federation import Federation

    federation = Federation.load(_federation_dir())
    members = federation.status()
    for member in members:
        state = "running" if member.running else "NOT RUNNING"
        where = f"on {member.address}; log {member.log_file}"
        typer.echo(f"{member.role} {member.name}: pid {member.pid} {state} {where}")
    if not all(member.running for member in members):
        raise typer.Exit(ExitCode.FAILED)


@federation_app.command("down")
def federation_down() -> None:
    """Stop the recorded federation's SuperNodes and SuperLink (their logs stay)."""
    from deploy.federation import Federation

    federation = Federation.load(_federation_dir())
    federation.down()
    typer.echo(f"federation down; logs stay in {federation.run_dir}")


@study_app.command("run")
def study_run(
    study_id: StudyIdOption,
    node: NodeOption,
    tls: TlsOption = False,
    set_: SetOption = None,
    timeout: TimeoutOption = 3600.0,
    port: PortOption = None,
) -> None:
    """Bring a federation up, run study --study-id on it to the end, and bring it down (also on Ctrl-C or failure).

    Before anything starts, the coordinator's key, the chain, the study (RUNNING), each node
    (its passphrase, chain and approval) and the task code are checked.
    """
    from deploy.federation import Federation

    nodes, run_config, env = _ready_to_run(study_id, node, set_)
    federation = Federation.up(_federation_dir(), nodes, tls=tls, coordinator_env=env, port=port)
    try:
        _describe(federation)
        _launch(federation, study_id, run_config, timeout, env)
        typer.echo(f"models in {_model_dir(env, study_id)}")
    finally:
        federation.down()
        typer.echo(f"federation down; logs stay in {federation.run_dir}")


@study_app.command("launch")
def study_launch(study_id: StudyIdOption, set_: SetOption = None, timeout: TimeoutOption = 3600.0) -> None:
    """Run study --study-id on the federation `federation up` started, and follow it to the end.

    With the coordinator's settings at hand, the study's state and task are checked first.
    Ctrl-C stops the run (not the federation).
    """
    from deploy.federation import Federation, coordinator_env
    from deploy.flower import read_app_config
    from deploy.preflight import check_coordinator, check_min_nodes, check_study, check_task

    federation = Federation.load(_federation_dir())
    run_config = _overrides(federation.app_dir, set_)
    config = {**read_app_config(federation.app_dir), **run_config}
    check_min_nodes(int(config[RunConfigName.MIN_NODES]), len(federation.supernodes))
    try:
        coordinator = check_coordinator()
    except SettingsError:  # the ServerApp has the settings the federation was started with; these are for checks
        env: dict[str, str] | None = None
    else:
        study = check_study(coordinator.exchange, study_id)
        check_task(study, str(config[RunConfigName.TASK]))
        env = coordinator_env(coordinator.settings)
    result = _launch(federation, study_id, run_config, timeout, env)
    typer.echo(f"ServerApp log: {result.log_file}")


@study_app.command("simulate")
def study_simulate(study_id: StudyIdOption, node: NodeOption, set_: SetOption = None) -> None:
    """Run study --study-id on Flower's simulation engine (Ray, in this process): one virtual SuperNode per --node.

    Each --node needs its passphrase file (DIR=PASSPHRASE_FILE). The same checks as `study run`
    come first.
    """
    from deploy.simulation import simulate, simulation_env  # imports flwr and, when run, Ray

    simulation_env(_nodes(node))  # each node has its passphrase file
    nodes, run_config, env = _ready_to_run(study_id, node, set_)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  | %(message)s"))
    logging.getLogger("metai").addHandler(handler)
    logging.getLogger("metai").setLevel(logging.INFO)
    result = simulate(nodes, study_id, run_config, coordinator_env=env)
    typer.echo(f"simulation of study {study_id} finished after {result.seconds:.0f} s")
    typer.echo(f"models in {_model_dir(env, study_id)}")


if __name__ == "__main__":
    app()
