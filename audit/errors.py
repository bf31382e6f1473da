"""The auditor's exceptions: one root, each kind also a builtin a caller may already catch."""

from __future__ import annotations


class AuditError(Exception):
    """Root of every error the audit package raises."""


class ArtifactError(AuditError, ValueError):
    """A contract artifact (compiled ABI JSON) is missing, unreadable or malformed."""


class ManifestError(AuditError, ValueError):
    """The deployment manifest is missing, unreadable, malformed, or disagrees with the artifacts."""


class RpcError(AuditError, ConnectionError):
    """The JSON-RPC endpoint could not be reached or answered with an error."""


class CallReverted(AuditError, RuntimeError):
    """An ``eth_call`` reverted; ``data`` holds the revert data (empty if the node gave none)."""

    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(message)
        self.data = data


class ReplayError(AuditError, ValueError):
    """The events cannot have come from the contract (or cover too few blocks) to answer a question."""


class InvalidUse(AuditError, ValueError):
    """A question is malformed: a use the contract's views would refuse too, or a patient that is no address."""
