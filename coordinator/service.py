"""What the HTTP service holds while it runs: settings, database, chain, keys, relay, limits, run launches.

One :class:`Services` object is built at start (the keys unlocked once) and handed to the app;
nothing is kept in module globals.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from contracts.exchange import Exchange
from coordinator.chain_index import ChainIndex
from coordinator.core.cache import Batched, ResponseCache
from coordinator.core.config import CoordinatorSettings
from coordinator.core.db import Database, upgrade
from coordinator.core.security import ActiveSession, RateLimiter, RoleCache, SessionCache, find_sessions
from coordinator.errors import CoordinatorConfigError
from coordinator.federated.control import ControlClient
from coordinator.federated.launches import Launcher
from coordinator.federated.managed import ManagedSuperLink
from coordinator.federated.superlink import SuperLinkConnection
from coordinator.federated.supernodes import SuperNodeRegistry
from coordinator.relay.intake import Intake
from coordinator.relay.process import RelayProcess
from coordinator.relay.worker import Relay

_log = logging.getLogger("metai.coordinator")


def unlock(key_file: Path, passphrase: str, what: str) -> LocalAccount:
    """Decrypt the Ethereum keystore ``key_file``.

    Raises:
        CoordinatorConfigError: the file is missing, not a keystore, or the passphrase is wrong.
    """
    try:
        keystore = json.loads(key_file.read_text("utf-8"))
    except FileNotFoundError:
        raise CoordinatorConfigError(f"{what} keystore {key_file} does not exist; set its path") from None
    except (OSError, ValueError) as exc:
        raise CoordinatorConfigError(f"{what} keystore {key_file} cannot be read as JSON: {exc}") from exc
    try:
        account: LocalAccount = Account.from_key(Account.decrypt(keystore, passphrase))
    except ValueError as exc:
        raise CoordinatorConfigError(f"cannot unlock the {what} keystore {key_file}: {exc}") from None
    return account


@dataclass
class Services:
    """Everything a request handler may use."""

    settings: CoordinatorSettings
    db: Database
    exchange: Exchange
    index: ChainIndex
    coordinator: LocalAccount
    relayer: LocalAccount
    relay: Relay
    intake: Intake
    roles: RoleCache
    sign_in_limit: RateLimiter
    relay_limit: RateLimiter
    lookup_limit: RateLimiter
    launcher: Launcher
    sessions: SessionCache = field(default_factory=SessionCache)
    answers: ResponseCache = field(default_factory=lambda: ResponseCache(0.0))
    #: One chain-index read and one database lookup per session token at a time (see api/deps.py).
    index_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    #: Set once :meth:`warm_up` ended (successfully or not).
    warmed_up: threading.Event = field(default_factory=threading.Event)
    #: The relay's child process, when the settings ask for one (else :attr:`relay` runs as a thread).
    relay_process: RelayProcess | None = None
    #: The SuperLink and Fleet gateway this service runs (``superlink=managed``), else None.
    superlink: ManagedSuperLink | None = None
    #: Hospitals' SuperNode keys on the SuperLink (None: no SuperLink is configured).
    supernodes: SuperNodeRegistry | None = None
    _tasks: dict[bytes, tuple[str, str]] | None = field(default=None, repr=False)
    #: Session tokens not in :attr:`sessions`, looked up in the database together (see api/deps.py).
    session_lookups: Batched[str, ActiveSession] = field(init=False, repr=False)
    _tasks_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _resuming: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.session_lookups = Batched(self._find_sessions)

    def _find_sessions(self, tokens: list[str]) -> dict[str, ActiveSession]:
        with self.db.read_connection() as connection:
            return find_sessions(connection, tokens)

    def task_catalogue(self) -> dict[bytes, tuple[str, str]]:
        """Each known training task's code hash -> (code, description); worked out once (it imports torch)."""
        with self._tasks_lock:
            if self._tasks is None:
                from tasks import TASKS, task_code_hash

                self._tasks = {task_code_hash(code): (code, task.spec.description) for code, task in TASKS.items()}
            return self._tasks

    def tasks_known(self) -> bool:
        """Whether the task catalogue is worked out already (asking for it later is then free)."""
        return self._tasks is not None

    def task_names(self) -> dict[bytes, str]:
        """Each known training task's code hash -> its code."""
        return {digest: code for digest, (code, _) in self.task_catalogue().items()}

    @classmethod
    def build(cls, settings: CoordinatorSettings) -> Services:
        """Connect to the chain and the database (migrating it), unlock both keys; nothing runs yet."""
        rpc_url, passphrase = settings.require()
        exchange = Exchange.connect(rpc_url, settings.manifest)
        coordinator = unlock(settings.key_file, passphrase, "coordinator")
        relayer = unlock(settings.relayer_key_file, passphrase, "relayer")
        db = Database(settings.database_url)
        upgrade(db.engine)
        launcher = Launcher.from_settings(settings, db)
        return cls(
            settings=settings, db=db, exchange=exchange, index=ChainIndex(exchange, max_lag=settings.chain_lag),
            coordinator=coordinator, relayer=relayer,
            relay=Relay(db, exchange.consent, relayer, batch=settings.relay_batch, wait=settings.relay_wait),
            intake=Intake(db, exchange.consent),
            roles=RoleCache(lambda role, address: exchange.roles.has(role, address)),
            sign_in_limit=RateLimiter(settings.sign_in_rate),
            relay_limit=RateLimiter(settings.relay_rate),
            lookup_limit=RateLimiter(settings.lookup_rate),
            launcher=launcher,
            answers=ResponseCache(settings.chain_lag),
            superlink=ManagedSuperLink(settings) if settings.managed else None,
            supernodes=supernode_registry(launcher.connection),
            relay_process=RelayProcess({
                "database_url": settings.database_url, "rpc_url": rpc_url, "manifest": str(settings.manifest.resolve()),
                "batch": settings.relay_batch, "wait": settings.relay_wait, "log_json": settings.log_json,
            }, relayer) if settings.relay_process and not db.in_memory else None,  # a child cannot open memory
        )

    def start_relay(self) -> None:
        """Start relaying consents in the background: in the child process, or in a thread."""
        (self.relay_process or self.relay).start()

    def notify_relay(self) -> None:
        """Tell the relay a consent was accepted, so that it does not wait for its next look."""
        (self.relay_process or self.relay).notify()

    def stop_relay(self) -> None:
        """Stop the background relay after its current batch (a second call does nothing)."""
        if self.relay_process is not None:
            self.relay_process.stop()
        self.relay.stop()

    def relay_running(self) -> bool:
        """Whether the background relay runs now (its process, or its thread)."""
        return self.relay_process.running() if self.relay_process is not None else self.relay.running()

    def warm_up(self) -> None:
        """Read the chain into the index and load the task catalogue, then exempt what exists from collection.

        Both would otherwise fall on the first requests that need them (the catalogue imports
        torch). Afterwards the objects made so far, torch's and the index's among them, are frozen
        out of the garbage collector's view: a full collection walks every object it tracks,
        and with them in view each one stopped the service for about 100 ms on 2 cores.
        Frozen objects are still freed when nothing refers to them any more.
        """
        started = time.perf_counter()
        try:
            self.index.sync()
            self.task_catalogue()
        except Exception:  # a request that needs them meets the failure itself, with its own error
            _log.exception("warming up failed; requests will read the chain and the task catalogue themselves")
        gc.collect()
        gc.freeze()
        self.warmed_up.set()
        _log.info("warmed up in %.1f s; %d objects exempt from garbage collection",
                  time.perf_counter() - started, gc.get_freeze_count())

    def start_superlink(self) -> None:
        """Start the managed SuperLink and its Fleet gateway, if the settings say so; return once both answer.

        Raises:
            CoordinatorConfigError: the gateway's certificate files are missing or do not fit together.
            ChildStartError: the SuperLink or the gateway did not start (its log is quoted).
        """
        if self.superlink is not None:
            self.superlink.start()

    def resume_launches(self) -> threading.Thread:
        """In a thread, take up the launches a stopped service left unfinished (after :meth:`start_superlink`).

        Each is followed again, submitted again with its run config, or ended as the chain says
        (coordinator/federated/resume.py); a failure is recorded on its launch and logged. Requests
        may start other studies meanwhile; the studies being resumed stay claimed.
        """
        from coordinator.federated.resume import resume_launches

        thread = threading.Thread(target=resume_launches, args=(self.launcher, self.exchange.studies),
                                  name="resume-launches", daemon=True)
        self._resuming = thread
        thread.start()
        return thread

    def superlink_running(self) -> bool | None:
        """Whether the managed SuperLink and its gateway both run now (None: the SuperLink is not managed)."""
        if self.superlink is None:
            return None
        return self.superlink.superlink.running() and self.superlink.gateway.running()

    def close(self) -> None:
        """Stop the relay and following runs, then the managed SuperLink (its state stays on disk), and close the
        database."""
        self.stop_relay()
        self.launcher.close()
        if self._resuming is not None:
            self._resuming.join(30.0)  # between two studies it sees the launcher closed
        if self.superlink is not None:
            self.superlink.stop()
        self.db.close()


def supernode_registry(connection: SuperLinkConnection | None) -> SuperNodeRegistry | None:
    """The SuperNode registry of the SuperLink ``connection`` reaches (None when there is none)."""
    if connection is None:
        return None
    return SuperNodeRegistry(lambda: ControlClient(connection.address, connection.root_certificates))
