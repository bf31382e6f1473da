"""The error boundary of the command lines: one line on stderr, a non-zero exit, never a secret.

``metai-node``, ``python -m deploy`` and the node's signing agent run every command inside
:class:`Boundary`. An error the project raises on purpose (the roots ``NodeError``,
``ChainError``, ``DeployError``, ``RawDataError``, ``CoordinatorError``, ``TaskError``), an
``OSError`` naming a file, a settings ``ValidationError`` or Ctrl-C becomes one line::

    error: <what is wrong>; <what to do>

with the exit code :attr:`~node.exit_codes.ExitCode.FAILED` (``INTERRUPTED`` for Ctrl-C).
Anything else is a bug: one line naming the exception class and asking for a report. The
traceback is printed only when ``METAI_DEBUG=1`` (plain Python frames, never local
variables), and every line printed here has the secrets in use (passphrases, keys, the PACS
password) replaced by ``***``.
"""

from __future__ import annotations

import re
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import click
from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.core import TyperGroup

from node.exit_codes import ExitCode

_TRUE = {"1", "true", "yes", "on"}
# Shorter "secrets" and the placeholders refused at start-up would blank out ordinary words.
_MIN_REDACTED = 6
_NOT_SECRETS = {"changeme", "change-me", "passphrase", "password"}

#: (module, class) of each package's exception root. Looked up in ``sys.modules`` only: an
#: exception of a package that was never imported cannot have been raised.
_ROOTS = (
    ("node.errors", "NodeError"),
    ("contracts.errors", "ChainError"),
    ("deploy.errors", "DeployError"),
    ("raw_data.errors", "RawDataError"),
    ("coordinator.errors", "CoordinatorError"),
    ("tasks.errors", "TaskError"),
)

Hint = Callable[[BaseException], str | None]


class _BoundarySettings(BaseSettings):
    """The debug switch and every secret a command line may hold (to keep them out of its output)."""

    model_config = SettingsConfigDict(env_prefix="METAI_", env_file=".env", extra="ignore")

    debug: str = ""
    node_passphrase: SecretStr | None = None
    node_pacs_password: SecretStr | None = None
    coordinator_passphrase: SecretStr | None = None
    admin_key: SecretStr | None = None


def _boundary_settings() -> _BoundarySettings:
    try:
        return _BoundarySettings()
    except ValidationError:  # cannot happen with these str fields; an error report must not fail
        return _BoundarySettings.model_construct()


def debug_enabled() -> bool:
    """Whether ``METAI_DEBUG`` asks for tracebacks."""
    return _boundary_settings().debug.strip().lower() in _TRUE


def secrets_in_use(extra: Iterable[str] = ()) -> list[str]:
    """The secret values this process knows of (environment, .env, ``extra``), longest first."""
    settings = _boundary_settings()
    values = [s.get_secret_value() for s in (settings.node_passphrase, settings.node_pacs_password,
                                              settings.coordinator_passphrase, settings.admin_key) if s]
    values += list(extra)
    found = {v.strip() for v in values} | {v.strip().removeprefix("0x") for v in values}
    return sorted((v for v in found if len(v) >= _MIN_REDACTED and v.lower() not in _NOT_SECRETS),
                  key=len, reverse=True)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by ``***`` where it stands on its own (not inside a word)."""
    for secret in secrets:
        text = re.sub(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", "***", text)
    return text


def _root_of(exc: BaseException) -> bool:
    for module_name, class_name in _ROOTS:
        module = sys.modules.get(module_name)
        root = getattr(module, class_name, None) if module is not None else None
        if isinstance(root, type) and isinstance(exc, root):
            return True
    return False


# A word that names a failure, not part of a name such as a logger's "uvicorn.error".
_CAUSE = re.compile(r"(?<![\w.])(error|errno|exception|refused|denied|failed|cannot|unable)(?![\w.])", re.IGNORECASE)


def _one_line(text: str) -> str:
    """The first line of ``text``; when it quotes more (a log's tail), also the quoted line naming the cause."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    quoted = lines[1:]
    cause = next((line for line in reversed(quoted) if _CAUSE.search(line)), quoted[-1])
    more = f"{len(quoted)} line{'s' if len(quoted) != 1 else ''}"
    return f"{lines[0].rstrip(':')}: ... {cause} ({more} quoted with METAI_DEBUG=1)"


def _settings_error(exc: ValidationError, prefixes: dict[str, str]) -> str:
    prefix = prefixes.get(exc.title, "")
    parts = []
    for error in exc.errors(include_input=False, include_url=False):
        name = f"{prefix}{str(error['loc'][0]).upper()}" if error["loc"] else exc.title
        parts.append(f"{name}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts) + "; fix it in the environment or the .env file"


def _revert_hint(exc: BaseException) -> str | None:
    values: Any = getattr(exc, "values", None)
    if getattr(exc, "error", None) == "AccessControlUnauthorizedAccount" and isinstance(values, dict):
        from contracts.errors import role_name

        role = values.get("neededRole")
        name = role_name(role) if isinstance(role, bytes) else None
        return f"ask the consortium admin to grant {values.get('account')} the {name or 'needed'} role"
    return None


@dataclass(frozen=True)
class Boundary:
    """Turns any exception of a command into one line on stderr and an exit code.

    Parameters:
        settings: the command line's settings classes, so a ``ValidationError`` of one names
            the environment variable (``METAI_NODE_RPC_URL``) rather than the field.
        hints: give the "what to do" for an error whose message lacks it (None: nothing to add).
        extra_secrets: secrets read from elsewhere than the settings (a passphrase file).
    """

    settings: tuple[type[BaseSettings], ...] = ()
    hints: tuple[Hint, ...] = ()
    extra_secrets: tuple[str, ...] = ()

    def describe(self, exc: BaseException, *, expected: bool = False) -> tuple[str, int]:
        """The error line (without ``error:``, not yet redacted) and the exit code for ``exc``.

        ``expected``: a command raised ``exc`` on purpose (a refused option), whatever its class.
        """
        if isinstance(exc, KeyboardInterrupt):
            return "interrupted (Ctrl-C)", ExitCode.INTERRUPTED
        if isinstance(exc, ValidationError):
            prefixes = {c.__name__: str(c.model_config.get("env_prefix", "")) for c in self.settings}
            return _settings_error(exc, prefixes), ExitCode.FAILED
        if expected or _root_of(exc):
            text = _one_line(str(exc)) or type(exc).__name__
        elif isinstance(exc, OSError) and exc.filename is not None:
            text = f"{exc.filename}: {exc.strerror or type(exc).__name__}; check the path"
        else:
            detail = _one_line(str(exc))
            return (
                f"unexpected {type(exc).__name__}{f' ({detail})' if detail else ''}: this is a bug; please report it "
                "with the output of the same command run with METAI_DEBUG=1",
                ExitCode.FAILED,
            )
        for hint in (*self.hints, _revert_hint):
            if (extra := hint(exc)) is not None:
                text += f" {extra}" if text.endswith("?") else f"; {extra}"
                break
        return text, ExitCode.FAILED

    def report(self, exc: BaseException, *, expected: bool = False) -> int:
        """Print ``exc`` as one ``error:`` line on stderr (after the traceback if METAI_DEBUG=1); return the code."""
        secrets = secrets_in_use(self.extra_secrets)
        text, code = self.describe(exc, expected=expected)
        if debug_enabled() and not isinstance(exc, KeyboardInterrupt):
            # Python's own traceback format: frames and source lines, never local variables.
            sys.stderr.write(redact("".join(traceback.format_exception(exc)), secrets))
        click.secho(f"error: {redact(text, secrets)}", fg="red", err=True)
        return code

    def group(self) -> type[TyperGroup]:
        """A Typer group class that runs every subcommand inside this boundary (``typer.Typer(cls=...)``)."""
        boundary = self

        class BoundaryGroup(TyperGroup):
            def invoke(self, ctx: click.Context) -> Any:
                try:
                    return super().invoke(ctx)
                except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                    raise  # click's own: --help, usage errors, typer.Exit(code)
                except (Exception, KeyboardInterrupt) as exc:
                    raise click.exceptions.Exit(boundary.report(exc)) from None

        return BoundaryGroup

    def fail(self, exc: BaseException) -> click.exceptions.Exit:
        """Report ``exc`` (an error a command caught or made itself); return the Exit to raise."""
        return click.exceptions.Exit(self.report(exc, expected=True))
