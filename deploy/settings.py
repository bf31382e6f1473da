"""Settings of the deploy tools, from ``METAI_*`` environment variables and an optional .env."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.endpoint import check_rpc_url
from deploy.errors import SettingsError

_PLACEHOLDERS = {"", "changeme", "change-me", "0x", "<admin-key>", "your-key-here"}


class Settings(BaseSettings):
    """Where to run, which chain to deploy to, and who gets the initial roles."""

    model_config = SettingsConfigDict(env_prefix="METAI_", env_file=".env", extra="ignore")

    #: Working directory for chains, logs, manifests (created on demand).
    run_dir: Path = Path("run")
    #: JSON-RPC endpoint to deploy to (``deploy contracts``); unset: none.
    rpc_url: str | None = None
    #: Hex private key of the consortium admin, who deploys. No default.
    admin_key: SecretStr | None = None
    #: Where the deployment manifest is written / read.
    manifest: Path | None = None
    #: Initial role holders (comma-separated addresses).
    hospitals: Annotated[list[str], NoDecode] = []
    researchers: Annotated[list[str], NoDecode] = []
    coordinator: str | None = None
    #: torch threads per hospital node started here (``deploy.threads``); 0: CPUs // nodes.
    torch_threads: int = 0

    @field_validator("rpc_url")
    @classmethod
    def _rpc_url(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else check_rpc_url(value)

    @field_validator("hospitals", "researchers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def manifest_path(self) -> Path:
        """The manifest path (default ``<run_dir>/deployment.json``)."""
        return self.manifest or self.run_dir / "deployment.json"

    def require_admin_key(self) -> str:
        """The admin key; raise SettingsError if unset or a placeholder."""
        key = self.admin_key.get_secret_value().strip() if self.admin_key else ""
        if key.lower() in _PLACEHOLDERS:
            raise SettingsError("METAI_ADMIN_KEY is not set: give the consortium admin's hex private key")
        body = key.removeprefix("0x")
        if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
            raise SettingsError("METAI_ADMIN_KEY must be 32 bytes of hex (64 hex digits, optional 0x)")
        if int(body, 16) == 0:
            raise SettingsError("METAI_ADMIN_KEY is all zeros: a placeholder, not a key")
        return key

    def require_rpc_url(self) -> str:
        """The RPC URL; raise SettingsError if unset."""
        if not self.rpc_url:
            raise SettingsError("METAI_RPC_URL is not set; set it to the chain's JSON-RPC URL, e.g. http://127.0.0.1:8545")
        return self.rpc_url
