"""Settings of the coordinator (``METAI_COORDINATOR_*`` and an optional .env)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from coordinator.errors import CoordinatorConfigError


class CoordinatorSettings(BaseSettings):
    """Where the chain is, who the coordinator is on it, where models go."""

    model_config = SettingsConfigDict(env_prefix="METAI_COORDINATOR_", env_file=".env", extra="ignore")

    #: The chain's JSON-RPC URL.
    rpc_url: str = ""
    #: The deployment manifest.
    manifest: Path = Path("run/deployment.json")
    #: Ethereum keystore (JSON) of the coordinator's key.
    key_file: Path = Path("run/coordinator-key.json")
    #: Passphrase of the keystore. No default.
    passphrase: SecretStr | None = None
    #: Where final and per-round models are stored.
    model_dir: Path = Path("run/models")
    #: Anchor rounds and completion on chain. Off only to measure what anchoring costs
    #: (benchmarks/federated.py); the nodes must be told too (node config ``anchor``).
    anchor: bool = True

    def require(self) -> tuple[str, str]:
        """The RPC URL and passphrase; raise CoordinatorConfigError if either is unset."""
        if not self.rpc_url:
            raise CoordinatorConfigError("METAI_COORDINATOR_RPC_URL is not set: give the chain's JSON-RPC URL")
        secret = self.passphrase.get_secret_value() if self.passphrase else ""
        if len(secret) < 12:
            raise CoordinatorConfigError("METAI_COORDINATOR_PASSPHRASE is unset or shorter than 12 characters")
        return self.rpc_url, secret
