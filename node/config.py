"""Settings of a hospital node: environment (``METAI_NODE_*``), .env, and the node directory.

The node directory holds everything the node keeps: ``node.json`` (what ``init`` recorded),
the encrypted hospital key, the encrypted node secrets, the catalog, the content store and the
quarantine. Nothing else in the node reads environment variables.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, PositiveInt, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.endpoint import optional_rpc_url
from node.errors import NodeConfigError

NODE_FILE = "node.json"
NODE_FORMAT = "metai-node"
NODE_FORMAT_VERSION = 1
_PLACEHOLDER_PASSPHRASES = {"", "changeme", "change-me", "passphrase", "password"}
MIN_PASSPHRASE = 12


def _coordinator_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected the coordinator's http(s) URL, e.g. https://coordinator.example.org")
    return value.strip().rstrip("/")


class NodeSettings(BaseSettings):
    """Where the node lives and how to unlock it."""

    model_config = SettingsConfigDict(env_prefix="METAI_NODE_", env_file=".env", extra="ignore", env_ignore_empty=True,
                                      hide_input_in_errors=True)

    #: The node directory.
    dir: Path = Path("metai-node")
    #: Passphrase protecting the hospital key and the node secrets (at least 12 characters). No default.
    passphrase: SecretStr | None = None
    #: Overrides the chain URL recorded by ``init``.
    rpc_url: Annotated[str | None, AfterValidator(optional_rpc_url)] = None
    #: Orthanc REST URL and credentials for ``import-pacs``.
    pacs_url: str | None = None
    pacs_user: str | None = None
    pacs_password: SecretStr | None = None
    #: The coordinator service's URL, where ``publish-proofs`` sends each round's cohort proofs for patients.
    coordinator_url: Annotated[str | None, AfterValidator(_coordinator_url)] = None
    #: How ``publish-proofs`` publishes: ``plain`` (each member's leaf values and proof) or ``sealed``
    #: (each patient's proofs encrypted to their own key); a node set to sealed never publishes plain.
    proof_mode: Literal["plain", "sealed"] = "plain"
    #: How many round contributions ``status`` checks the hospital's balance pays for; None: the rounds
    #: still to come in the studies the hospital approved, at least one (node/gas.py).
    gas_rounds: PositiveInt | None = None

    # Every value is checked when the settings load, not when a command first reaches for it.
    @field_validator("pacs_url")
    @classmethod
    def _pacs_url(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else check_pacs_url(value)

    @field_validator("passphrase")
    @classmethod
    def _passphrase(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value is not None else ""
        if value is not None and secret.strip().lower() in _PLACEHOLDER_PASSPHRASES:
            raise ValueError("a placeholder, not a passphrase; set it to the passphrase given to `metai-node init` "
                             "(it unlocks the hospital key)")
        if value is not None and len(secret) < MIN_PASSPHRASE:
            raise ValueError(f"shorter than {MIN_PASSPHRASE} characters, the minimum of a node passphrase; set it to "
                             "the passphrase given to `metai-node init`")
        return value

    def require_passphrase(self) -> str:
        """The passphrase (checked when the settings loaded); raise NodeConfigError if unset."""
        if self.passphrase is None:
            raise NodeConfigError(
                "METAI_NODE_PASSPHRASE is not set; set it to the passphrase given to `metai-node init` "
                "(it unlocks the hospital key)"
            )
        return self.passphrase.get_secret_value()


def check_pacs_url(url: str) -> str:
    """Return ``url`` (without a trailing slash) if it is an http(s) URL with a host, no credentials, no query.

    Raises:
        NodeConfigError: it is not, saying what to set instead.
    """
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is not None and (parts.username is not None or parts.password is not None):
        raise NodeConfigError(
            "the PACS URL contains a username or password; remove them from METAI_NODE_PACS_URL and set "
            "METAI_NODE_PACS_USER and METAI_NODE_PACS_PASSWORD instead"
        )
    if parts is None or not port_ok or parts.scheme not in ("http", "https") or not parts.hostname:
        raise NodeConfigError(f"PACS URL {url!r} is not an http(s) URL; expected e.g. http://pacs.local:8042")
    if parts.query or parts.fragment:
        raise NodeConfigError(f"PACS URL {url!r} has a query or fragment; give the root of Orthanc's REST API")
    return url.rstrip("/")


@dataclass(frozen=True)
class NodeInfo:
    """What ``metai-node init`` recorded in ``node.json``."""

    hospital_name: str
    hospital_address: str
    rpc_url: str
    manifest: str  # path of the deployment manifest copy, relative to the node directory
    created_at: str
    version: int = NODE_FORMAT_VERSION
    format: str = NODE_FORMAT

    def save(self, node_dir: Path) -> None:
        """Write ``node.json`` atomically."""
        path = node_dir / NODE_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, node_dir: Path) -> NodeInfo:
        """Read ``node.json``; raise NodeConfigError naming the problem."""
        path = node_dir / NODE_FILE
        if not path.exists():
            what = "does not exist" if not node_dir.exists() else f"is not a node directory (no {NODE_FILE})"
            raise NodeConfigError(
                f"node directory {node_dir} {what}; give the directory `metai-node init` made, or make one with it"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            info = cls(**data)
        except (json.JSONDecodeError, TypeError) as exc:
            raise NodeConfigError(f"{path} is malformed ({exc}); restore it from a backup") from exc
        if info.format != NODE_FORMAT or info.version != NODE_FORMAT_VERSION:
            raise NodeConfigError(f"{path} is format {info.format!r} version {info.version}; this node reads "
                                  f"{NODE_FORMAT!r} version {NODE_FORMAT_VERSION}")
        return info
