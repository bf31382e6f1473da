"""The deployment manifest: where the MeTAI contracts live on a chain.

Written by ``deploy`` after deploying, read by every other package (nodes, coordinator,
auditors). JSON, versioned, with the chain id, each contract's address, the block it was
deployed in and the sha256 of the bytecode it was deployed from.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from contracts.artifacts import CONTRACT_NAMES
from contracts.errors import ManifestError

MANIFEST_FORMAT = "metai-deployment"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class DeployedContract:
    """One deployed contract."""

    address: str
    block: int
    tx_hash: str
    bytecode_sha256: str


@dataclass(frozen=True)
class Deployment:
    """All MeTAI contracts on one chain."""

    chain_id: int
    contracts: dict[str, DeployedContract]
    admin: str
    deployed_at: str  # ISO 8601 UTC
    rpc_url: str = ""  # where it was deployed from; a hint, each machine sets its own

    @property
    def deploy_block(self) -> int:
        """The first block that can hold MeTAI events."""
        return min(c.block for c in self.contracts.values())

    def address(self, name: str) -> str:
        """The address of contract ``name``."""
        try:
            return self.contracts[name].address
        except KeyError:
            raise ManifestError(f"the manifest has no contract {name!r}") from None

    def to_json(self) -> str:
        """Serialise as the manifest file's text."""
        data: dict[str, Any] = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION}
        data.update(asdict(self))
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> Deployment:
        """Parse a manifest; raise ManifestError naming ``source`` and the problem."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{source}: not JSON ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ManifestError(f"{source}: not a MeTAI deployment manifest (format field)")
        if data.get("version") != MANIFEST_VERSION:
            raise ManifestError(
                f"{source}: manifest version {data.get('version')}, this code reads {MANIFEST_VERSION}"
            )
        try:
            contracts = {k: DeployedContract(**v) for k, v in data["contracts"].items()}
            deployment = cls(
                chain_id=int(data["chain_id"]),
                contracts=contracts,
                admin=str(data["admin"]),
                deployed_at=str(data["deployed_at"]),
                rpc_url=str(data.get("rpc_url", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(f"{source}: missing or malformed field ({exc})") from exc
        missing = [n for n in CONTRACT_NAMES if n not in contracts]
        if missing:
            raise ManifestError(f"{source}: no address for {', '.join(missing)}")
        return deployment


def write_manifest(deployment: Deployment, path: Path) -> None:
    """Write ``deployment`` to ``path`` atomically (a crash leaves the old file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(deployment.to_json())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(path: Path) -> Deployment:
    """Read the manifest at ``path``.

    Raises:
        ManifestError: missing, unreadable or malformed.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read deployment manifest {path}: {exc.strerror}") from exc
    return Deployment.from_json(text, str(path))
