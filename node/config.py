"""Settings of a hospital node: environment (``METAI_NODE_*``), .env, and the node directory.

The node directory holds everything the node keeps: ``node.json`` (what ``init`` recorded),
the encrypted hospital key, the encrypted node secrets, the catalog, the content store and the
quarantine. Nothing else in the node reads environment variables.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, PositiveInt, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.endpoint import optional_rpc_url
from node.errors import NodeConfigError

NODE_FILE = "node.json"
NODE_FORMAT = "metai-node"
NODE_FORMAT_VERSION = 1
_PLACEHOLDER_PASSPHRASES = {"", "changeme", "change-me", "passphrase", "password"}
MIN_PASSPHRASE = 12
#: The longest path a Unix socket may have on Linux (``sun_path`` holds 108 bytes with the final NUL).
MAX_SOCKET_PATH = 107
#: Where ``serve`` keeps the signing agent's socket, inside its runtime directory.
SIGNER_SOCKET = Path("signer") / "agent.sock"


def _coordinator_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected the coordinator's http(s) URL, e.g. https://coordinator.example.org")
    return value.strip().rstrip("/")


def _superlink_address(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    host, sep, port = value.strip().rpartition(":")
    if (not sep or not host or "/" in value or not port.isdigit() or not 1 <= int(port) <= 65535
            or (":" in host and not (host.startswith("[") and host.endswith("]")))):
        raise ValueError("expected HOST:PORT of the SuperLink's Fleet API (an IPv6 address in brackets), e.g. "
                         "coordinator.example.org:9443 or 10.77.0.2:9443, without a scheme")
    return value.strip()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 possibly in brackets) is this machine's loopback."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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

    # ``metai-node serve`` (node/service.py): the SuperNode, its signing agent, logs and health check.
    #: HOST:PORT of the consortium SuperLink's Fleet API (often a gateway on the coordinator host).
    superlink_address: Annotated[str | None, AfterValidator(_superlink_address)] = None
    #: The consortium CA certificate (PEM) the SuperLink's TLS certificate must chain to.
    superlink_root_certificates: Path | None = None
    #: Reach the SuperLink over plain HTTP instead of TLS; allowed only for a loopback address.
    superlink_insecure: bool = Field(default=False, validate_default=True)
    #: The SuperNode's authentication key (OpenSSH P-384); None: ``<dir>/federation/supernode.key``.
    supernode_key: Path | None = None
    #: Port of the SuperNode's own Runtime API, bound to 127.0.0.1, where its ClientApps connect.
    supernode_port: int = Field(default=9094, ge=1, le=65535)
    #: Port of serve's health check (``GET /health``), bound to 127.0.0.1.
    health_port: int = Field(default=9095, ge=1, le=65535)
    #: Where serve writes its own log and its children's; None: ``<dir>/logs``.
    log_dir: Path | None = None
    #: Size at which a log file is rotated (``x.log`` -> ``x.log.1`` ...), in bytes.
    log_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    #: How many rotated files of each log are kept (``x.log.1`` .. ``x.log.N``).
    log_backups: int = Field(default=5, ge=1, le=1000)
    #: Where serve keeps its lock, state, the SuperNode's node config and FLWR_HOME, and the signing
    #: agent's socket; None: ``<dir>/run``.
    runtime_dir: Path | None = None
    #: Seconds serve waits for its children to be ready (signing agent listening, SuperNode activated).
    start_timeout: float = Field(default=120.0, gt=0)

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

    @field_validator("superlink_insecure")
    @classmethod
    def _superlink(cls, insecure: bool, info: ValidationInfo) -> bool:
        # Checked on the last of the three SuperLink fields, so that the other two are known here.
        address, root = info.data.get("superlink_address"), info.data.get("superlink_root_certificates")
        if insecure and root is not None:
            raise ValueError("excludes METAI_NODE_SUPERLINK_ROOT_CERTIFICATES; keep the certificate, unset this")
        if insecure and address is not None and not is_loopback(address.rpartition(":")[0]):
            raise ValueError(f"the SuperLink at {address} is not on loopback, so it must be reached over TLS: "
                             "set METAI_NODE_SUPERLINK_ROOT_CERTIFICATES to the consortium CA certificate instead")
        return insecure

    @field_validator("runtime_dir")
    @classmethod
    def _runtime_dir(cls, value: Path | None) -> Path | None:
        if value is not None:
            check_socket_path(value.absolute() / SIGNER_SOCKET, "METAI_NODE_RUNTIME_DIR")
        return value

    @model_validator(mode="after")
    def _ports(self) -> NodeSettings:
        if self.supernode_port == self.health_port:
            raise ValueError(f"METAI_NODE_SUPERNODE_PORT and METAI_NODE_HEALTH_PORT are both {self.health_port}; "
                             "give each its own port")
        return self

    @property
    def supernode_key_path(self) -> Path:
        """The SuperNode's private key: the setting, else ``<dir>/federation/supernode.key``."""
        return self.supernode_key or self.dir / "federation" / "supernode.key"

    @property
    def log_path(self) -> Path:
        """The log directory: the setting, else ``<dir>/logs``."""
        return self.log_dir or self.dir / "logs"

    @property
    def runtime_path(self) -> Path:
        """The runtime directory: the setting, else ``<dir>/run``."""
        return self.runtime_dir or self.dir / "run"

    def as_env(self) -> dict[str, str]:
        """Every setting that is set, as the ``METAI_NODE_*`` variables a child process reads (paths absolute).

        What serve hands its children, so that they run with the values serve loaded, wherever
        those came from (environment or ``.env``).
        """
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = value.absolute()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[f"METAI_NODE_{name.upper()}"] = str(value)
        return env

    def require_passphrase(self) -> str:
        """The passphrase (checked when the settings loaded); raise NodeConfigError if unset."""
        if self.passphrase is None:
            raise NodeConfigError(
                "METAI_NODE_PASSPHRASE is not set; set it to the passphrase given to `metai-node init` "
                "(it unlocks the hospital key)"
            )
        return self.passphrase.get_secret_value()

    def require_superlink(self) -> tuple[str, Path | None]:
        """The SuperLink's address and the CA certificate to check it with (None: plain HTTP, loopback only).

        Raises:
            NodeConfigError: the address is unset, or neither a certificate nor plain HTTP is set.
        """
        if self.superlink_address is None:
            raise NodeConfigError("METAI_NODE_SUPERLINK_ADDRESS is not set; set it to HOST:PORT of the consortium "
                                  "SuperLink's Fleet API, which the coordinator operator gives")
        if self.superlink_root_certificates is None and not self.superlink_insecure:
            raise NodeConfigError("METAI_NODE_SUPERLINK_ROOT_CERTIFICATES is not set; set it to the consortium CA "
                                  "certificate (PEM) the coordinator operator gives (or, for a SuperLink on "
                                  "loopback only, METAI_NODE_SUPERLINK_INSECURE=true)")
        return self.superlink_address, self.superlink_root_certificates


def check_socket_path(path: Path, setting: str) -> Path:
    """Return ``path`` if a Unix socket can have it (at most 107 bytes).

    Raises:
        NodeConfigError: it is longer, naming ``setting`` as what to shorten.
    """
    if len(bytes(path)) > MAX_SOCKET_PATH:
        raise NodeConfigError(f"the signing agent's socket {path} would be {len(bytes(path))} bytes long, over the "
                              f"{MAX_SOCKET_PATH} a Unix socket path may have; set {setting} to a shorter directory, "
                              "e.g. /run/metai-node")
    return path


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
