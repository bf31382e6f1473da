"""The independent auditor (``metai-audit``): reads the chain with its own code.

It depends on web3 (and its eth-abi / eth-utils), the contracts' ABI artifacts read as files,
and numeric libraries only; it imports no other package of the project, so a bug in the
project's chain client, node or coordinator is not repeated here.

Reading consent and roles as of any block::

    deployment = read_manifest(Path("run/deployment.json"))
    artifacts = read_artifacts()                    # contracts/artifacts of this checkout
    check_bytecode(deployment, artifacts)
    reader = connect("http://127.0.0.1:8545", deployment)
    consents = read_consent_history(reader, deployment, artifacts)
    consents.explain(patient, Use(hospital, KIND_CT_SINOGRAM, Purpose.HMB, study_id=3), reader.instant(120))
"""

from audit.artifacts import DEFAULT_ARTIFACTS, Artifact, artifact_named, read_artifact, read_artifacts
from audit.consent import ConsentHistory, ConsentState, Reason, Verdict, read_consent_history
from audit.datause import (
    ALL_KINDS,
    ANY_HOSPITAL,
    ANY_STUDY,
    KIND_CT_SINOGRAM,
    KIND_DERIVED,
    KIND_IMAGE,
    KIND_MR_KSPACE,
    Purpose,
    Scope,
    Use,
    candidate_scopes,
    consent_id,
)
from audit.errors import ArtifactError, AuditError, CallReverted, InvalidUse, ManifestError, ReplayError, RpcError
from audit.events import Event, EventDecoder, read_events
from audit.manifest import DeployedContract, Deployment, check_bytecode, parse_manifest, read_manifest
from audit.roles import DEFAULT_ADMIN_ROLE, ROLES, RoleHistory, read_role_history, role_name
from audit.rpc import ChainReader, Instant, Log, connect

__all__ = [
    "ALL_KINDS",
    "ANY_HOSPITAL",
    "ANY_STUDY",
    "DEFAULT_ADMIN_ROLE",
    "DEFAULT_ARTIFACTS",
    "KIND_CT_SINOGRAM",
    "KIND_DERIVED",
    "KIND_IMAGE",
    "KIND_MR_KSPACE",
    "ROLES",
    "Artifact",
    "ArtifactError",
    "AuditError",
    "CallReverted",
    "ChainReader",
    "ConsentHistory",
    "ConsentState",
    "DeployedContract",
    "Deployment",
    "Event",
    "EventDecoder",
    "Instant",
    "InvalidUse",
    "Log",
    "ManifestError",
    "Purpose",
    "Reason",
    "ReplayError",
    "RoleHistory",
    "RpcError",
    "Scope",
    "Use",
    "Verdict",
    "artifact_named",
    "candidate_scopes",
    "check_bytecode",
    "connect",
    "consent_id",
    "parse_manifest",
    "read_artifact",
    "read_artifacts",
    "read_consent_history",
    "read_events",
    "read_manifest",
    "read_role_history",
    "role_name",
]
