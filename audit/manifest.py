"""Read the deployment manifest (which ``deploy`` writes) as a plain JSON file.

The format, ``metai-deployment`` version 1::

    {"format": "metai-deployment", "version": 1, "chain_id": 31337, "admin": "0x...",
     "contracts": {"ConsentRegistry": {"address": "0x...", "block": 3, "tx_hash": "0x...",
                                       "bytecode_sha256": "..."}, ...}, ...}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import is_address, to_checksum_address

from audit.artifacts import CONTRACTS, Artifact
from audit.errors import ManifestError

FORMAT = "metai-deployment"
VERSION = 1


@dataclass(frozen=True)
class DeployedContract:
    """Where one contract lives: its checksummed address, deployment block and bytecode hash."""

    address: str
    block: int
    bytecode_sha256: str


@dataclass(frozen=True)
class Deployment:
    """The MeTAI contracts on one chain, as the manifest names them."""

    chain_id: int
    admin: str
    contracts: dict[str, DeployedContract]

    def contract(self, name: str) -> DeployedContract:
        """Return the deployed contract ``name``.

        Raises:
            ManifestError: the manifest names no such contract.
        """
        try:
            return self.contracts[name]
        except KeyError:
            raise ManifestError(f"the manifest has no contract {name!r}; it has {sorted(self.contracts)}") from None


def _contract(source: str, name: str, entry: Any) -> DeployedContract:
    if not isinstance(entry, dict):
        raise ManifestError(f"{source}: contracts.{name} is a {type(entry).__name__}, expected an object")
    address, block = entry.get("address"), entry.get("block")
    if not isinstance(address, str) or not is_address(address):
        raise ManifestError(f"{source}: contracts.{name}.address is {address!r}, expected a 0x address")
    if not isinstance(block, int) or isinstance(block, bool) or block < 0:
        raise ManifestError(f"{source}: contracts.{name}.block is {block!r}, expected a block number")
    return DeployedContract(to_checksum_address(address), block, str(entry.get("bytecode_sha256", "")))


def parse_manifest(text: str, source: str = "<string>", names: Iterable[str] = CONTRACTS) -> Deployment:
    """Parse a manifest's text and check that it names every contract of ``names``.

    Raises:
        ManifestError: not JSON, another format or version, or a field missing or malformed
            (the message names ``source`` and the field).
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{source}: not JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ManifestError(f"{source}: not a deployment manifest (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise ManifestError(f"{source}: manifest version {data.get('version')!r}, this auditor reads {VERSION}")
    chain_id, contracts = data.get("chain_id"), data.get("contracts")
    if not isinstance(chain_id, int) or isinstance(chain_id, bool):
        raise ManifestError(f"{source}: chain_id is {chain_id!r}, expected an integer")
    if not isinstance(contracts, dict):
        raise ManifestError(f"{source}: 'contracts' is {type(contracts).__name__}, expected an object")
    missing = [name for name in names if name not in contracts]
    if missing:
        raise ManifestError(f"{source}: no address for {', '.join(missing)}")
    admin = data.get("admin")
    if not isinstance(admin, str) or not is_address(admin):
        raise ManifestError(f"{source}: admin is {admin!r}, expected a 0x address")
    return Deployment(
        chain_id=chain_id,
        admin=to_checksum_address(admin),
        contracts={name: _contract(source, name, entry) for name, entry in contracts.items()},
    )


def read_manifest(path: Path) -> Deployment:
    """Read and parse the manifest file at ``path`` (see :func:`parse_manifest`).

    Raises:
        ManifestError: the file cannot be read, or its content is not a valid manifest.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read deployment manifest {path}: {exc.strerror}") from exc
    return parse_manifest(text, str(path))


def check_bytecode(deployment: Deployment, artifacts: Mapping[str, Artifact]) -> None:
    """Check that each contract was deployed from the bytecode of the artifact read for it.

    An ABI from another build may decode events wrongly, so the audit refuses to go on with one.

    Raises:
        ManifestError: naming every contract whose recorded bytecode hash differs.
    """
    wrong = [
        f"{name} (manifest {deployment.contract(name).bytecode_sha256[:12] or 'none'}, "
        f"artifact {artifact.bytecode_sha256[:12]})"
        for name, artifact in sorted(artifacts.items())
        if deployment.contract(name).bytecode_sha256 != artifact.bytecode_sha256
    ]
    if wrong:
        raise ManifestError(f"deployed from other bytecode than the artifacts read: {'; '.join(wrong)}; "
                            "pass the artifacts directory of the build that was deployed")
