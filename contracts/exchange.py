"""One handle on every MeTAI contract of a deployment."""

from __future__ import annotations

from pathlib import Path

from contracts.chain import Chain
from contracts.consent import ConsentClient
from contracts.datasets import DatasetClient
from contracts.errors import ManifestError
from contracts.events import ChainEvent, read_events
from contracts.manifest import Deployment, read_manifest
from contracts.roles import RolesClient
from contracts.studies import StudyClient


class Exchange:
    """The contracts of ``deployment`` on ``chain``.

    Raises:
        ManifestError: the chain's id differs from the manifest's, or a contract has no code.
    """

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        if chain.chain_id != deployment.chain_id:
            raise ManifestError(
                f"{chain.rpc_url} is chain {chain.chain_id}, the manifest is for chain "
                f"{deployment.chain_id}: point METAI_RPC_URL at the right chain"
            )
        for name, deployed in deployment.contracts.items():
            if not chain.w3.eth.get_code(chain.w3.to_checksum_address(deployed.address)):
                raise ManifestError(
                    f"no code for {name} at {deployed.address} on {chain.rpc_url}: "
                    "the chain was reset or the manifest is stale; redeploy"
                )
        self.chain = chain
        self.deployment = deployment
        self.roles = RolesClient(chain, deployment.address("ConsortiumRoles"))
        self.consent = ConsentClient(chain, deployment.address("ConsentRegistry"))
        self.datasets = DatasetClient(chain, deployment.address("DatasetRegistry"))
        self.studies = StudyClient(chain, deployment.address("StudyRegistry"))

    @classmethod
    def connect(cls, rpc_url: str, manifest: Path, *, timeout: float = 30.0) -> Exchange:
        """Connect to ``rpc_url`` and bind the contracts listed in the ``manifest`` file."""
        return cls(Chain(rpc_url, timeout=timeout), read_manifest(manifest))

    def events(self, *, from_block: int | None = None, to_block: int | None = None) -> list[ChainEvent]:
        """Every event of the exchange's contracts in chain order (default: since deployment)."""
        start = self.deployment.deploy_block if from_block is None else from_block
        addresses = [c.address for c in self.deployment.contracts.values()]
        return read_events(self.chain, addresses, from_block=start, to_block=to_block)
