"""Exceptions of the chain layer.

Every error raised by :mod:`contracts` derives from :class:`ChainError`. A reverted call
raises :class:`ContractRevert` (or one of its per-error subclasses) carrying the custom
error's name and decoded arguments, never a bare "execution reverted".
"""

from __future__ import annotations

from typing import Any

from contracts.enums import Role


class ChainError(Exception):
    """Root of every error raised by the chain layer."""


class BuildError(ChainError, RuntimeError):
    """The Solidity sources could not be compiled."""


class ArtifactError(ChainError, FileNotFoundError):
    """A compiled artifact is missing or unreadable."""


class ManifestError(ChainError, ValueError):
    """A deployment manifest is missing, malformed or does not match the chain."""


class InvalidRpcUrl(ChainError, ValueError):
    """A JSON-RPC URL is malformed (no http(s) scheme, no host, bad port)."""


class ConnectionFailed(ChainError, ConnectionError):
    """The JSON-RPC endpoint cannot be reached or answers wrongly."""


class ChainUnavailable(ConnectionFailed):
    """Nothing answers at the JSON-RPC URL (connection refused, unknown host, timeout).

    Attributes:
        url: the endpoint.
        reason: why, in a few words ("connection refused", "no answer within 30 s").
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the chain at {url} ({reason}); is it running?")


class StateUnavailable(ChainError, LookupError):
    """The endpoint no longer keeps the state of the requested block (pruned history)."""


class TransactionFailed(ChainError, RuntimeError):
    """A transaction was mined but failed without a decodable reason."""


class ContractRevert(ChainError):
    """A contract call reverted with a custom error.

    Attributes:
        error: the custom error's name, e.g. ``"ConsentRegistryInvalidSigner"``.
        values: its arguments by name, decoded (addresses checksummed, bytes as ``bytes``).
        contract: the contract the failing call was sent to, if known.
    """

    def __init__(self, error: str, values: dict[str, Any], contract: str | None = None) -> None:
        self.error = error
        self.values = values
        self.contract = contract
        shown = ", ".join(f"{k}={_show(k, v)}" for k, v in values.items())
        where = f" in {contract}" if contract else ""
        super().__init__(f"{error}({shown}){where}")


class UnknownRevert(ChainError):
    """A call reverted with data that matches no known custom error (kept raw in ``data``)."""

    def __init__(self, message: str, data: bytes | None = None) -> None:
        self.data = data
        super().__init__(message)


def role_name(value: bytes) -> str | None:
    """The name of the consortium role whose on-chain id is ``value`` (``"HOSPITAL"``), or None."""
    for role in Role:
        if role.value == value:
            return role.name
    return None


def _show(name: str, value: Any) -> str:
    if isinstance(value, bytes):
        # A role argument (AccessControl's neededRole, ...) is a bytes32 hash: show its name.
        if "role" in name.lower() and (known := role_name(value)) is not None:
            return known
        return "0x" + value.hex()
    return repr(value) if isinstance(value, str) else str(value)
