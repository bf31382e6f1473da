"""Running the node as a service: ``serve`` (in the foreground) and ``health`` (asks a running serve)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from node.cli.common import BOUNDARY, out, passphrase, settings
from node.config import NodeInfo
from node.errors import NodeConfigError, NodeError


class Unhealthy(NodeError, RuntimeError):
    """The running serve answered its health check with 503."""


def serve() -> None:
    """Run this node's Flower SuperNode and signing agent in the foreground, supervised, until SIGTERM or Ctrl-C.

    The SuperNode connects to METAI_NODE_SUPERLINK_ADDRESS over TLS (METAI_NODE_SUPERLINK_ROOT_CERTIFICATES)
    with the node's SuperNode key (`metai-node federation-key`); the signing agent unlocks the hospital key
    once. A child that dies is restarted; logs go to METAI_NODE_LOG_DIR; GET
    http://127.0.0.1:METAI_NODE_HEALTH_PORT/health answers how it goes. Exit 0 once stopped, 1 (one error
    line) if it cannot start. See docs/node.md#serve.
    """
    from pydantic import SecretStr

    from node.service import serve as run

    current = settings()
    if current.passphrase is None and out().is_terminal:  # run by hand: asked once, handed to the children
        try:
            NodeInfo.load(current.dir)  # a missing node directory is named before the passphrase is asked for
        except NodeConfigError as exc:
            raise NodeConfigError(f"{exc}; the node directory is METAI_NODE_DIR") from None
        current = current.model_copy(update={"passphrase": SecretStr(passphrase(current))})
    run(current, echo=typer.echo)


def health(
    as_json: Annotated[bool, typer.Option("--json", help="print serve's whole health answer (JSON)")] = False,
) -> None:
    """Ask the running `metai-node serve` of this node how it is: exit 0 if all is well, 1 otherwise.

    Prints one line per child (or, with --json, serve's whole answer); when serve is unhealthy, or
    does not answer on 127.0.0.1:METAI_NODE_HEALTH_PORT, one error line on stderr says why.
    """
    from node.health import read_health

    status, body = read_health(settings().health_port)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
    else:
        for name, child in body.get("children", {}).items():
            typer.echo(_child_line(name, child))
    if status != 200:
        problems = "; ".join(str(p) for p in body.get("problems", [])) or f"HTTP {status}"
        raise BOUNDARY.fail(Unhealthy(f"serve is unhealthy: {problems}"))


def _child_line(name: str, child: dict[str, Any]) -> str:
    if not child.get("running"):
        last = child.get("last_exit") or {}
        return f"{name}: not running" + (f" (it exited: {last.get('reason')})" if last else "")
    facts = [f"pid {child.get('pid')}", f"since {child.get('since')}", f"restarts {child.get('restarts')}"]
    facts += [f"{key.replace('_', ' ')} {value}" for key, value in child.items()
              if key not in {"running", "pid", "since", "restarts", "ready", "last_exit"}]
    return f"{name}: {'ready' if child.get('ready') else 'not ready'}; " + ", ".join(facts)
