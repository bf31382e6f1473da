"""``metai-coordinator``: run the coordinator service, or migrate its database.

Settings come from ``METAI_COORDINATOR_*`` variables and an optional ``.env`` (docs/coordinator.md
lists them). An error the project raises on purpose, or a malformed setting, ends the command
with one line on stderr and exit code 1; secrets never appear in it.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Annotated

import typer
from pydantic import ValidationError

from contracts.errors import ChainError
from coordinator.errors import CoordinatorError

app = typer.Typer(help="The MeTAI exchange's coordinator service.", no_args_is_help=True, add_completion=False)
_log = logging.getLogger("metai.coordinator")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default METAI_COORDINATOR_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default METAI_COORDINATOR_PORT)")] = None,
) -> None:
    """Serve the API and portal: connect to the chain, migrate the database, unlock the keys, relay consents."""
    import uvicorn

    from coordinator.core import logs
    from coordinator.core.config import CoordinatorSettings
    from coordinator.main import create_app
    from coordinator.service import Services

    settings = CoordinatorSettings()
    writer = logs.configure(settings.log_json)
    try:
        services = Services.build(settings)
        bind_host, bind_port = host or settings.host, port or settings.port
        _log.info("serving on %s:%d for %s (chain %d, database %s)", bind_host, bind_port, settings.public_url,
                  services.exchange.chain.chain_id, services.db.backend)
        # In the background, so the service answers (its health first of all) while it warms up.
        threading.Thread(target=services.warm_up, name="warm-up", daemon=True).start()
        try:
            uvicorn.run(create_app(services), host=bind_host, port=bind_port, log_config=None, access_log=False,
                        server_header=False, proxy_headers=False)
        finally:
            services.close()
    finally:
        writer.stop()  # the lines still queued are written before the process ends


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
