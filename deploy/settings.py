"""Settings of the deploy tools, from ``METAI_*`` environment variables and an optional .env."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from eth_utils.address import is_checksum_address, is_hex_address
from pydantic import AfterValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from contracts.endpoint import optional_rpc_url
from deploy.errors import SettingsError

_PLACEHOLDERS = {"", "changeme", "change-me", "0x", "<admin-key>", "your-key-here"}


class Settings(BaseSettings):
    """Where to run, which chain to deploy to, and who gets the initial roles.

    Every value is checked when the settings load (a malformed key, URL or address stops the
    command there, naming the variable); the commands that need an optional one ask for it with
    :meth:`require_admin_key` and :meth:`require_rpc_url`. An empty variable counts as unset.
    """

    model_config = SettingsConfigDict(env_prefix="METAI_", env_file=".env", extra="ignore", env_ignore_empty=True,
                                      hide_input_in_errors=True)

    #: Working directory for chains, logs, manifests (created on demand).
    run_dir: Path = Path("run")
    #: JSON-RPC endpoint to deploy to (``deploy contracts``); unset: none.
    rpc_url: Annotated[str | None, AfterValidator(optional_rpc_url)] = None
    #: Hex private key of the consortium admin, who deploys. No default.
    admin_key: SecretStr | None = None
    #: Where the deployment manifest is written / read.
    manifest: Path | None = None
    #: Initial role holders (comma-separated addresses).
    hospitals: Annotated[list[str], NoDecode] = []
    researchers: Annotated[list[str], NoDecode] = []
    coordinator: str | None = None
    #: Seconds between beginning and accepting a transfer of the consortium admin seat (two steps).
    admin_delay: int = Field(default=2 * 24 * 3600, ge=0, lt=2**48)
    #: torch threads per hospital node started here (``deploy.threads``); 0: CPUs // nodes.
    torch_threads: int = Field(default=0, ge=0)

    @field_validator("admin_key")
    @classmethod
    def _admin_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        key = value.get_secret_value().strip()
        if not key:
            return None
        if key.lower() in _PLACEHOLDERS:
            raise ValueError("a placeholder, not a key; give the consortium admin's hex private key")
        body = key.removeprefix("0x")
        if len(body) != 64 or any(c not in "0123456789abcdefABCDEF" for c in body):
            raise ValueError("must be 32 bytes of hex (64 hex digits, optional 0x)")
        if int(body, 16) == 0:
            raise ValueError("all zeros: a placeholder, not a key")
        return SecretStr(key)

    @field_validator("hospitals", "researchers", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("hospitals", "researchers")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for address in value:
            check_address(address)
        return value

    @field_validator("coordinator")
    @classmethod
    def _coordinator(cls, value: str | None) -> str | None:
        return None if value is None else check_address(value)

    def manifest_path(self) -> Path:
        """The manifest path (default ``<run_dir>/deployment.json``)."""
        return self.manifest or self.run_dir / "deployment.json"

    def require_admin_key(self) -> str:
        """The admin key (checked when the settings loaded); raise SettingsError if unset."""
        if self.admin_key is None:
            raise SettingsError("METAI_ADMIN_KEY is not set: give the consortium admin's hex private key")
        return self.admin_key.get_secret_value()

    def require_rpc_url(self) -> str:
        """The RPC URL; raise SettingsError if unset."""
        if not self.rpc_url:
            raise SettingsError("METAI_RPC_URL is not set; set it to the chain's JSON-RPC URL, e.g. http://127.0.0.1:8545")
        return self.rpc_url


def check_address(value: str) -> str:
    """``value`` if it is an Ethereum address (0x, 40 hex digits, a valid checksum if mixed-case).

    Raises:
        ValueError: it is not; the message names the value and the expected form.
    """
    body = value.removeprefix("0x")
    mixed = body != body.lower() and body != body.upper()
    if not value.startswith("0x") or not is_hex_address(value) or (mixed and not is_checksum_address(value)):
        raise ValueError(f"{value!r} is not an Ethereum address (0x and 40 hex digits, checksummed if mixed-case)")
    return value
