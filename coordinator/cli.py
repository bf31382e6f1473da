"""``metai-coordinator``: run the coordinator service, migrate its database, manage hospitals' SuperNode keys.

Settings come from ``METAI_COORDINATOR_*`` variables and an optional ``.env`` (docs/coordinator.md
lists them). An error the project raises on purpose, or a malformed setting, ends the command
with one line on stderr and exit code 1; secrets never appear in it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from contracts.errors import ChainError
from coordinator.errors import CoordinatorError

if TYPE_CHECKING:
    from coordinator.federated.supernodes import SuperNodeRegistry

app = typer.Typer(help="The MeTAI exchange's coordinator service.", no_args_is_help=True, add_completion=False)
_log = logging.getLogger("metai.coordinator")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default METAI_COORDINATOR_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default METAI_COORDINATOR_PORT)")] = None,
) -> None:
    """Serve the API and portal: connect to the chain, migrate the database, unlock the keys, relay consents; with
    METAI_COORDINATOR_SUPERLINK=managed also run the SuperLink (127.0.0.1) and its Fleet gateway."""
    import uvicorn

    from coordinator.core import logs
    from coordinator.core.config import CoordinatorSettings
    from coordinator.main import create_app
    from coordinator.service import Services

    settings = CoordinatorSettings()
    writer = logs.configure(settings.log_json)
    _stop_on_sigterm()
    try:
        services = Services.build(settings)
        bind_host, bind_port = host or settings.host, port or settings.port
        _log.info("serving on %s:%d for %s (chain %d, database %s)", bind_host, bind_port, settings.public_url,
                  services.exchange.chain.chain_id, services.db.backend)
        try:
            services.start_superlink()  # before the API answers, so a study can start on it at once
            services.resume_launches()  # the studies a stopped service had launched, in the background
            # In the background, so the service answers (its health first of all) while it warms up.
            threading.Thread(target=services.warm_up, name="warm-up", daemon=True).start()
            uvicorn.run(create_app(services), host=bind_host, port=bind_port, log_config=None, access_log=False,
                        server_header=False, proxy_headers=False)
        finally:
            services.close()
    finally:
        writer.stop()  # the lines still queued are written before the process ends


def _stop_on_sigterm() -> None:
    """Make SIGTERM end the service through its ``finally`` clauses, which stop its children.

    uvicorn catches SIGTERM to shut down, then raises it again; with the default action the
    process would end there, leaving the managed SuperLink running. A second SIGTERM during the
    clean-up is ignored, so that it is not cut short (SIGKILL still ends it).
    """
    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)


supernode_app = typer.Typer(help="Hospitals' SuperNode keys on the SuperLink (run on the coordinator host).",
                            no_args_is_help=True, add_completion=False)
app.add_typer(supernode_app, name="supernode")


@supernode_app.command("register")
def supernode_register(
    name: Annotated[str, typer.Argument(help="the hospital's name or address (1-63 letters, digits, '.', '_', '-')")],
    public_key: Annotated[str, typer.Argument(help="the line `metai-node federation-key` printed on the hospital host "
                                                   "(quote it), a file holding it, or - to read it from stdin")],
) -> None:
    """Register a hospital's SuperNode public key; the same key and name again change nothing."""
    from coordinator.federated.supernodes import parse_public_key

    key = parse_public_key(_key_text(public_key))
    node, created = _registry().register(name, key)
    what = "registered" if created else "already registered"
    typer.echo(f"{what}: SuperNode {node.node_id} {node.name!r} ({node.status}), key {node.fingerprint}")


@supernode_app.command("list")
def supernode_list() -> None:
    """List the SuperNodes the SuperLink knows: id, name, state, key fingerprint (unregistered ones too)."""
    for node in _registry().list():
        typer.echo(f"{node.node_id}\t{node.name}\t{node.status}\t{node.fingerprint}\t{node.registered_at}")


@supernode_app.command("unregister")
def supernode_unregister(
    node_id: Annotated[int, typer.Argument(min=1, help="the SuperNode's id (as `supernode list` shows it)")],
) -> None:
    """Unregister a SuperNode: its key is refused from now on and can never be registered again."""
    node = _registry().unregister(node_id)
    typer.echo(f"unregistered: SuperNode {node.node_id} {node.name!r}, key {node.fingerprint}")


def _registry() -> SuperNodeRegistry:
    from coordinator.core.config import CoordinatorSettings
    from coordinator.errors import CoordinatorConfigError
    from coordinator.federated.managed import superlink_connection
    from coordinator.service import supernode_registry

    registry = supernode_registry(superlink_connection(CoordinatorSettings()))
    if registry is None:
        raise CoordinatorConfigError("no SuperLink is configured: set METAI_COORDINATOR_SUPERLINK=managed (and run "
                                     "`metai-coordinator serve`) or METAI_COORDINATOR_SUPERLINK_ADDRESS")
    return registry


def _key_text(value: str) -> str:
    from pathlib import Path

    if value == "-":
        return sys.stdin.read()
    if not value.lstrip().startswith(("ecdsa-", "ssh-")) and Path(value).is_file():
        return Path(value).read_text(encoding="utf-8", errors="replace")
    return value


@app.command()
def migrate() -> None:
    """Bring the database named by METAI_COORDINATOR_DATABASE_URL to the newest schema."""
    from coordinator.core.config import CoordinatorSettings
    from coordinator.core.db import Database, current_revision, upgrade

    database = Database(CoordinatorSettings().database_url)
    upgrade(database.engine)
    typer.echo(f"database at schema revision {current_revision(database.engine)}")
    database.close()


def main() -> None:
    """Run the command line with its error boundary."""
    try:
        app(standalone_mode=False)
    except (CoordinatorError, ChainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except ValidationError as exc:
        fields = "; ".join(f"METAI_COORDINATOR_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                           for e in exc.errors())
        print(f"error: invalid setting: {fields}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
