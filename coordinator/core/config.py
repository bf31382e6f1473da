"""Settings of the coordinator (``METAI_COORDINATOR_*`` and an optional .env).

One class serves both halves of the coordinator: the Flower ServerApp that runs a study, and
the HTTP service (``metai-coordinator serve``) through which patients, researchers and
hospitals use the exchange. Every value is checked when the settings load; ``require*()``
only names what a given job lacks.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts.endpoint import optional_rpc_url
from coordinator.errors import CoordinatorConfigError

MIN_PASSPHRASE = 12


def _public_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected the http(s) URL people open the portal at, e.g. https://exchange.example.org")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("expected an origin only (scheme, host and port), without a path, query or fragment")
    return f"{parts.scheme}://{parts.netloc}"


def _superlink_address(value: str | None) -> str | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or "/" in value or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT of the SuperLink (its one port), e.g. 127.0.0.1:9093, without a scheme")
    return value


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _env(field: str) -> str:
    return f"METAI_COORDINATOR_{field.upper()}"


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
        raise ValueError("expected sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB")
    return value


class CoordinatorSettings(BaseSettings):
    """Where the chain is, who the coordinator is on it, where models and state go, how it serves."""

    model_config = SettingsConfigDict(env_prefix="METAI_COORDINATOR_", env_file=".env", extra="ignore",
                                      env_ignore_empty=True, hide_input_in_errors=True)

    #: The chain's JSON-RPC URL. Required to run a study and to serve.
    rpc_url: Annotated[str | None, AfterValidator(optional_rpc_url)] = None
    #: The chain's JSON-RPC URL as people's browsers reach it: the portal checks proofs and sends
    #: patients' own transactions there. Unset: the same as ``rpc_url``.
    public_rpc_url: Annotated[str | None, AfterValidator(optional_rpc_url)] = None
    #: The deployment manifest.
    manifest: Path = Path("run/deployment.json")
    #: Ethereum keystore (JSON) of the coordinator's key (holds the COORDINATOR role).
    key_file: Path = Path("run/coordinator-key.json")
    #: Ethereum keystore (JSON) of the key that pays the gas of relayed consents. It needs no role;
    #: it is apart from the coordinator's key so that relaying never races a study's anchoring
    #: transactions for the same account nonce.
    relayer_key_file: Path = Path("run/relayer-key.json")
    #: Passphrase of both keystores (at least 12 characters). No default; required to run a study and to serve.
    passphrase: SecretStr | None = None
    #: Where final and per-round models are stored.
    model_dir: Path = Path("run/models")
    #: Anchor rounds and completion on chain. Off only to measure what anchoring costs
    #: (benchmarks/federated.py); the nodes must be told too (node config ``anchor``).
    anchor: bool = True

    # ------------------------------------------------------------------ the HTTP service
    #: SQLAlchemy URL of the service's database: SQLite (embedded) or PostgreSQL.
    database_url: Annotated[str, AfterValidator(_database_url)] = "sqlite:///run/coordinator.sqlite"
    #: Address the service listens on.
    host: str = "127.0.0.1"
    #: Port the service listens on.
    port: int = Field(default=8000, ge=1, le=65535)
    #: The origin people and scripts reach the service at; sign-in messages name its host as their
    #: domain and only messages for it are accepted.
    public_url: Annotated[str, AfterValidator(_public_url)] = "http://127.0.0.1:8000"
    #: Seconds a sign-in message may be signed and returned in.
    sign_in_ttl: int = Field(default=300, ge=30, le=3600)
    #: Seconds a session lasts after sign-in.
    session_ttl: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    #: Sign-in attempts (message requests and verifications) allowed per client address per minute.
    sign_in_rate: int = Field(default=30, ge=1)
    #: Signed consents one account may submit for relay per minute.
    relay_rate: int = Field(default=120, ge=1)
    #: Anonymous sealed-proof lookups allowed per client address per minute.
    lookup_rate: int = Field(default=240, ge=1)
    #: Largest request body accepted, in bytes.
    max_body: int = Field(default=64 * 1024, ge=1024)
    #: Consents relayed in one transaction at most.
    relay_batch: int = Field(default=100, ge=1, le=200)
    #: Seconds the relay waits for more consents before sending a batch that is not full.
    relay_wait: float = Field(default=0.2, ge=0.0, le=60.0)
    #: Run the consent relay in a child process of its own, so that its work never holds up requests
    #: (``false``: a thread of the service's process, as in the in-process tests).
    relay_process: bool = True
    #: Seconds an answer read from the chain's events may lag the chain; an answer past it is still given while
    #: it is rebuilt, for as long again at most (0: read new blocks and build every answer on every request).
    chain_lag: float = Field(default=0.5, ge=0.0, le=60.0)
    #: Log lines as JSON objects (one per line) instead of text.
    log_json: bool = True
    #: How hospitals publish cohort proofs here: ``plain`` (leaf values and proofs, shown to each patient's
    #: session) or ``sealed`` (envelopes encrypted to each patient's key under tags this service cannot
    #: link to addresses; patients look them up anonymously). Each mode refuses the other's publications.
    proof_mode: Literal["plain", "sealed"] = "plain"

    # ------------------------------------------------------------------ starting studies on the SuperLink
    #: HOST:PORT of the SuperLink's Control API (in Flower 1.41 the SuperLink's one port). The Control
    #: API has no authentication of its own: it must be reachable from this host only. Unset: the
    #: service cannot start studies.
    superlink_address: Annotated[str | None, AfterValidator(_superlink_address)] = None
    #: CA certificate (PEM) the SuperLink's TLS certificate chains to.
    superlink_root_certificates: Path | None = None
    #: Reach the SuperLink over plain HTTP instead; allowed for a loopback address only.
    superlink_insecure: bool = Field(default=False, validate_default=True)
    #: FLWR_HOME of the flwr commands the service runs: the SuperLink connection and each run's log.
    flwr_home: Path = Path("run/flwr-home")
    #: The Flower app the service submits (pyproject.toml with [tool.flwr.app]); unset: this repository.
    flower_app: Path | None = None
    #: Seconds a run may take from its submission to its end; then it is stopped.
    run_timeout: float = Field(default=3600.0, gt=0)

    # ------------------------------------------------------------------ the SuperLink this service runs (managed)
    #: Port of the managed SuperLink on 127.0.0.1 (its Fleet, Control and Runtime APIs); never bound elsewhere.
    superlink_port: int = Field(default=9093, ge=1, le=65535)
    #: The managed SuperLink's folder: its database (``superlink.db``, so a restart resumes it), log,
    #: FLWR_HOME and its loopback TLS files.
    superlink_dir: Path = Path("run/superlink")
    #: Address the Fleet gateway listens on: where hospitals' SuperNodes connect (e.g. 0.0.0.0, or the
    #: coordinator's own IP such as 10.77.0.2).
    fleet_host: str = "127.0.0.1"
    #: Port the Fleet gateway listens on (TLS); the address hospitals give their SuperNodes is HOST:this.
    fleet_port: int = Field(default=9092, ge=1, le=65535)
    #: The coordinator's server certificate (PEM; a chain may follow it) for the DNS names and IP addresses
    #: hospitals reach the Fleet gateway at, issued by the consortium CA.
    fleet_cert: Path | None = None
    #: The server certificate's private key (unencrypted PEM).
    fleet_key: Path | None = None
    #: The consortium CA certificate (PEM): the one file hospitals get; the service checks at start that
    #: ``fleet_cert`` was issued by it.
    fleet_ca: Path | None = None
    #: ``external``: start studies on the SuperLink at ``superlink_address`` (or nowhere, unset).
    #: ``managed``: run the SuperLink as a child process on 127.0.0.1:``superlink_port`` with TLS and
    #: SuperNode authentication, restart it if it dies, and let hospitals in through the Fleet gateway
    #: (``fleet_*``), which forwards only the Fleet API.
    superlink: Literal["external", "managed"] = Field(default="external", validate_default=True)

    @field_validator("passphrase")
    @classmethod
    def _passphrase(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_PASSPHRASE:
            raise ValueError(f"shorter than {MIN_PASSPHRASE} characters, the minimum of the coordinator's passphrase")
        return value

    @field_validator("superlink_insecure")
    @classmethod
    def _superlink(cls, insecure: bool, info: ValidationInfo) -> bool:
        # Checked on the last of the three SuperLink fields, so that the other two are known here.
        address, root = info.data.get("superlink_address"), info.data.get("superlink_root_certificates")
        if insecure and root is not None:
            raise ValueError("excludes METAI_COORDINATOR_SUPERLINK_ROOT_CERTIFICATES; keep the certificate, "
                             "unset this")
        if address is None:
            return insecure
        if insecure and not _is_loopback(address.rpartition(":")[0]):
            raise ValueError(f"the SuperLink at {address} is not on loopback, so it must be reached over TLS: "
                             "set METAI_COORDINATOR_SUPERLINK_ROOT_CERTIFICATES instead")
        if not insecure and root is None:
            raise ValueError(f"the SuperLink at {address} needs METAI_COORDINATOR_SUPERLINK_ROOT_CERTIFICATES "
                             "(TLS) or, on loopback only, this set to true")
        return insecure

    @field_validator("superlink")
    @classmethod
    def _managed(cls, mode: str, info: ValidationInfo) -> str:
        # Checked on the last field of the SuperLink settings, so that the others are known here.
        data = info.data
        tls = {name: data.get(name) for name in ("fleet_cert", "fleet_key", "fleet_ca")}
        if mode == "external":
            if given := [name for name, value in tls.items() if value is not None]:
                raise ValueError(f"is external, but {_env(given[0])} is set, which only a managed SuperLink uses: "
                                 "set METAI_COORDINATOR_SUPERLINK=managed, or unset it")
            return mode
        for name in ("superlink_address", "superlink_root_certificates"):
            if data.get(name) is not None:
                raise ValueError(f"is managed, so the service runs its own SuperLink on 127.0.0.1:"
                                 f"{data.get('superlink_port')}; unset {_env(name)}")
        if data.get("superlink_insecure"):
            raise ValueError("is managed, and the managed SuperLink always serves TLS; unset "
                             "METAI_COORDINATOR_SUPERLINK_INSECURE")
        if missing := [_env(name) for name, value in tls.items() if value is None]:
            raise ValueError(f"is managed, which needs {', '.join(missing)}: the Fleet gateway's certificate, key "
                             "and the consortium CA (python -m deploy certs makes them)")
        ports = {"METAI_COORDINATOR_PORT": data.get("port"), "METAI_COORDINATOR_FLEET_PORT": data.get("fleet_port"),
                 "METAI_COORDINATOR_SUPERLINK_PORT": data.get("superlink_port")}
        if None not in ports.values() and len(set(ports.values())) < len(ports):
            listed = ", ".join(f"{name}={port}" for name, port in ports.items())
            raise ValueError(f"is managed, and the service's three ports must differ: {listed}")
        return mode

    @model_validator(mode="after")
    def _public_rpc_url(self) -> CoordinatorSettings:
        if self.public_rpc_url is None:
            self.public_rpc_url = self.rpc_url
        return self

    @property
    def managed(self) -> bool:
        """Whether this service runs the SuperLink (and its Fleet gateway) itself."""
        return self.superlink == "managed"

    def as_env(self) -> dict[str, str]:
        """Every set value as a ``METAI_COORDINATOR_*`` variable, paths absolute: the environment in which a
        ServerApp (which may run in another directory) reads the same settings. Unset values are left out."""
        env: dict[str, str] = {}
        for field in type(self).model_fields:  # every setting, including ones added later
            value = getattr(self, field)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, Path):
                value = value.resolve()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[_env(field)] = str(value)
        return env

    @property
    def domain(self) -> str:
        """The host (and port, if any) sign-in messages must name: the public URL's authority."""
        return urlsplit(self.public_url).netloc

    def require(self) -> tuple[str, str]:
        """The RPC URL and passphrase; raise CoordinatorConfigError if either is unset."""
        if not self.rpc_url:
            raise CoordinatorConfigError("METAI_COORDINATOR_RPC_URL is not set: give the chain's JSON-RPC URL")
        if self.passphrase is None:
            raise CoordinatorConfigError("METAI_COORDINATOR_PASSPHRASE is not set")
        return self.rpc_url, self.passphrase.get_secret_value()
