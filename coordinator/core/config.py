"""Settings of the coordinator (``METAI_COORDINATOR_*`` and an optional .env)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.endpoint import optional_rpc_url
from coordinator.errors import CoordinatorConfigError

MIN_PASSPHRASE = 12


class CoordinatorSettings(BaseSettings):
    """Where the chain is, who the coordinator is on it, where models go."""

    model_config = SettingsConfigDict(env_prefix="METAI_COORDINATOR_", env_file=".env", extra="ignore",
                                      env_ignore_empty=True, hide_input_in_errors=True)

    #: The chain's JSON-RPC URL. Required to run a study.
    rpc_url: Annotated[str | None, AfterValidator(optional_rpc_url)] = None
    #: The deployment manifest.
    manifest: Path = Path("run/deployment.json")
    #: Ethereum keystore (JSON) of the coordinator's key.
    key_file: Path = Path("run/coordinator-key.json")
    #: Passphrase of the keystore (at least 12 characters). No default; required to run a study.
    passphrase: SecretStr | None = None
    #: Where final and per-round models are stored.
    model_dir: Path = Path("run/models")
    #: Anchor rounds and completion on chain. Off only to measure what anchoring costs
    #: (benchmarks/federated.py); the nodes must be told too (node config ``anchor``).
    anchor: bool = True

    # Every value is checked when the settings load; require() names what a study run lacks.
    @field_validator("passphrase")
    @classmethod
    def _passphrase(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_PASSPHRASE:
            raise ValueError(f"shorter than {MIN_PASSPHRASE} characters, the minimum of the coordinator's passphrase")
        return value

    def require(self) -> tuple[str, str]:
        """The RPC URL and passphrase; raise CoordinatorConfigError if either is unset."""
        if not self.rpc_url:
            raise CoordinatorConfigError("METAI_COORDINATOR_RPC_URL is not set: give the chain's JSON-RPC URL")
        if self.passphrase is None:
            raise CoordinatorConfigError("METAI_COORDINATOR_PASSPHRASE is not set")
        return self.rpc_url, self.passphrase.get_secret_value()
