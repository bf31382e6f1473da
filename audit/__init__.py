"""The independent auditor (``metai-audit``): reads the chain with its own code.

It depends on web3 (and its eth-abi / eth-utils), the contracts' ABI artifacts read as files,
and numeric libraries only; it imports no other package of the project, so a bug in the
project's chain client, node or coordinator is not repeated here.
"""

from audit.artifacts import DEFAULT_ARTIFACTS, Artifact, artifact_named, read_artifact, read_artifacts
from audit.errors import ArtifactError, AuditError, CallReverted, InvalidUse, ManifestError, ReplayError, RpcError
from audit.events import Event, EventDecoder, read_events
from audit.manifest import DeployedContract, Deployment, check_bytecode, parse_manifest, read_manifest
from audit.rpc import ChainReader, Instant, Log, connect

__all__ = [
    "DEFAULT_ARTIFACTS",
    "Artifact",
    "ArtifactError",
    "AuditError",
    "CallReverted",
    "ChainReader",
    "DeployedContract",
    "Deployment",
    "Event",
    "EventDecoder",
    "Instant",
    "InvalidUse",
    "Log",
    "ManifestError",
    "ReplayError",
    "RpcError",
    "artifact_named",
    "check_bytecode",
    "connect",
    "parse_manifest",
    "read_artifact",
    "read_artifacts",
    "read_events",
    "read_manifest",
]
