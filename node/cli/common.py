"""What every ``metai-node`` command shares: its error boundary, console, settings and the opened node."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import SecretStr
from rich.console import Console

from contracts.errors import ChainUnavailable, InvalidRpcUrl
from node.cli.boundary import Boundary
from node.config import NodeInfo, NodeSettings
from node.errors import KeyStoreError, NodeConfigError

if TYPE_CHECKING:
    from node.node import Node

F = TypeVar("F", bound=Callable[..., Any])


def _hint(exc: BaseException) -> str | None:
    """What to do about an error whose message cannot know which setting is behind it."""
    if isinstance(exc, ChainUnavailable | InvalidRpcUrl):
        return "check METAI_NODE_RPC_URL, or the rpc_url `metai-node init` recorded in the node's node.json"
    if isinstance(exc, KeyStoreError) and "wrong passphrase" in str(exc):
        return "set METAI_NODE_PASSPHRASE to the passphrase given to `metai-node init`"
    return None


#: The one error boundary every command runs in (see :mod:`node.cli.boundary`).
BOUNDARY = Boundary(settings=(NodeSettings,), hints=(_hint,))


def out() -> Console:
    """A console on the current stdout (one per call, so output can be captured and redirected)."""
    return Console(soft_wrap=True)


def settings() -> NodeSettings:
    """The node's settings (environment and .env), validated as they load."""
    return NodeSettings()


def passphrase(current: NodeSettings, *, confirm: bool = False) -> str:
    """The node passphrase: from the settings, else asked for on a terminal."""
    if current.passphrase is None and out().is_terminal:
        value = typer.prompt("Node passphrase", hide_input=True, confirmation_prompt=confirm)
        try:  # what is typed passes the checks the variable does
            secret = NodeSettings._passphrase(SecretStr(value))
        except ValueError as exc:
            raise NodeConfigError(f"the passphrase typed is {exc}") from None
        current = current.model_copy(update={"passphrase": secret})
    return current.require_passphrase()


def open_node() -> Node:
    """The node of METAI_NODE_DIR, its passphrase checked (a wrong one is refused before any work)."""
    current = settings()
    try:
        NodeInfo.load(current.dir)  # a missing node directory is named before any passphrase is asked for
    except NodeConfigError as exc:
        raise NodeConfigError(f"{exc}; the node directory is METAI_NODE_DIR") from None
    secret = passphrase(current)
    from node.node import Node  # web3, SQLAlchemy: only once the settings are right

    node = Node(current.dir, secret, rpc_url=current.rpc_url)
    _ = node.secrets  # unseals the node secrets (scrypt, a tenth of a second): raises KeyStoreError if wrong
    return node


def inputs_exist(*names: str) -> Callable[[F], F]:
    """Refuse the command before it starts when a path given in parameter ``names`` does not exist."""

    def decorate(command: F) -> F:
        signature = inspect.signature(command)

        @functools.wraps(command)
        def checked(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            for name in names:
                value = bound.arguments.get(name)
                for path in value if isinstance(value, list) else [value]:
                    if path is not None and not Path(path).exists():
                        option = f"--{name.replace('_', '-')}" if name != "paths" else "PATH"
                        raise NodeConfigError(f"{option} {path} does not exist; check the path")
            return command(*args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate
