"""The service's launches of studies on the SuperLink: one run per study at a time, each followed in a thread.

``POST /v1/studies/{id}/start`` claims the study with its run config (:meth:`Launcher.claim`: a
second claim while a run is launching or running is refused), sends ``start`` on chain when the
study is only requested, and submits the run (:meth:`Launcher.submit`, which returns once the
SuperLink has accepted it and leaves a thread following it to its end). ``GET
/v1/studies/{id}/run`` reads :meth:`Launcher.current`. Every launch is written through to the
service's database (:mod:`coordinator.federated.launch_records`), so a restarted service knows
the launches it left unfinished and takes them up again (:mod:`coordinator.federated.resume`:
it follows a run that is still alive, or submits the study's run again with the same run
config). See docs/federated.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coordinator.core.config import CoordinatorSettings
from coordinator.core.db import Database
from coordinator.errors import CoordinatorConfigError, CoordinatorError
from coordinator.federated.control import ControlClient
from coordinator.federated.flower_config import ConfigValue, checked_config, read_app_config
from coordinator.federated.launch_records import Launch, LaunchInProgress, LaunchRecords, LaunchState
from coordinator.federated.managed import superlink_connection
from coordinator.federated.superlink import (
    APP_DIR,
    CONNECTION,
    FlowerRunError,
    RunDetached,
    SubmittedRun,
    SuperLinkConnection,
    follow_run,
    submit_run,
    write_connection,
)
from coordinator.run_config import RunConfigError, RunConfigName

__all__ = ["Launch", "LaunchInProgress", "LaunchState", "Launcher", "launch_config"]

_log = logging.getLogger("metai.coordinator.launches")
#: Run-config names the study itself sets; a launch may not override them.
_FROM_THE_STUDY = (RunConfigName.STUDY_ID, RunConfigName.TASK)


def launch_config(
    app_dir: Path, *, study_id: int, task: str, hospitals: int, overrides: Mapping[str, ConfigValue]
) -> dict[str, ConfigValue]:
    """Return the run-config overrides of a study's launch: ``overrides`` checked, with the study's id and task.

    Parameters:
        app_dir: the Flower app (its ``[tool.flwr.app.config]`` gives the names and their types).
        study_id, task: the study's id on chain and the code of its task.
        hospitals: how many hospitals the study names (``min-nodes`` may not exceed it).
        overrides: other names of ``[tool.flwr.app.config]``, each typed like its default (a
            whole number is taken where a float is expected).

    Raises:
        RunConfigError: an unknown name, ``study-id`` or ``task`` (the study sets them), a value
            of another type than the default's, text with a control character, or ``min-nodes``
            larger than ``hospitals``.
        CoordinatorConfigError: ``app_dir`` holds no readable pyproject.toml.
    """
    try:
        defaults = read_app_config(app_dir)
    except ValueError as exc:
        raise CoordinatorConfigError(f"METAI_COORDINATOR_FLOWER_APP: {exc}") from None
    for name, value in overrides.items():
        if name in _FROM_THE_STUDY:
            raise RunConfigError(f"run config {name} is set from the study; leave it out")
        if name not in defaults:
            raise RunConfigError(f"run config {name!r} is not in [tool.flwr.app.config] (known: {sorted(defaults)})")
        if not _same_kind(value, defaults[name]):
            raise RunConfigError(f"run config {name} = {value!r}; expected {type(defaults[name]).__name__} like its "
                                 f"default {defaults[name]!r}")
    config: dict[str, ConfigValue] = {**overrides, RunConfigName.STUDY_ID: study_id, RunConfigName.TASK: task}
    try:
        checked_config(config, "run config")
    except ValueError as exc:
        raise RunConfigError(str(exc)) from None
    min_nodes = int({**defaults, **config}[RunConfigName.MIN_NODES])
    if min_nodes > hospitals:
        raise RunConfigError(f"min-nodes is {min_nodes} but the study names {hospitals} hospital(s); the ServerApp "
                             f"would wait for nodes in vain: set min-nodes to {hospitals} or less")
    return config


def _same_kind(value: ConfigValue, default: ConfigValue) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return type(value) is type(default)



class Launcher:
    """The runs this service launches on the SuperLink, one per study at a time, on record in its database."""

    def __init__(self, records: LaunchRecords, *, connection: SuperLinkConnection | None, flwr_home: Path,
                 app_dir: Path, timeout: float, owns_superlink: bool = False) -> None:
        """Launch into the SuperLink of ``connection`` (None: launching is refused), with FLWR_HOME ``flwr_home``.

        ``owns_superlink``: the SuperLink is this service's own (``superlink=managed``), started
        anew with the service, so no run submitted before the service started can be alive.
        """
        self.records = records
        self.connection = connection
        self.flwr_home = flwr_home
        self.app_dir = app_dir
        self.timeout = timeout
        self.owns_superlink = owns_superlink
        self._lock = threading.Lock()
        self._followers: list[threading.Thread] = []
        self._detach = threading.Event()

    @classmethod
    def from_settings(cls, settings: CoordinatorSettings, db: Database) -> Launcher:
        """The launcher the settings describe (``superlink*``, ``flwr_home``, ``flower_app``, ``run_timeout``),
        keeping its launches in ``db``."""
        return cls(LaunchRecords(db), connection=superlink_connection(settings), flwr_home=settings.flwr_home,
                   app_dir=settings.flower_app or APP_DIR, timeout=settings.run_timeout,
                   owns_superlink=settings.managed)

    def require_connection(self) -> SuperLinkConnection:
        """The SuperLink connection.

        Raises:
            CoordinatorConfigError: no SuperLink is configured, or its CA certificate file is missing.
        """
        if self.connection is None:
            raise CoordinatorConfigError("METAI_COORDINATOR_SUPERLINK_ADDRESS is not set (nor "
                                         "METAI_COORDINATOR_SUPERLINK=managed), so this service cannot launch runs; "
                                         "the operator sets one of them")
        root = self.connection.root_certificates
        if root is not None and not root.is_file():
            raise CoordinatorConfigError(f"METAI_COORDINATOR_SUPERLINK_ROOT_CERTIFICATES is {root}, which does not "
                                         "exist; point it at the SuperLink's CA certificate")
        return self.connection

    def control(self) -> ControlClient:
        """A client of the SuperLink's Control API (close it after use).

        Raises:
            CoordinatorConfigError: see :meth:`require_connection`.
            ControlUnavailable: the CA certificate cannot be read.
        """
        connection = self.require_connection()
        return ControlClient(connection.address, connection.root_certificates)

    @property
    def detached(self) -> bool:
        """Whether :meth:`close` was called: the service is stopping."""
        return self._detach.is_set()

    def current(self, study_id: int) -> Launch | None:
        """The study's latest launch by this service (before a restart too), or None."""
        return self.records.get(study_id)

    def unfinished(self) -> list[Launch]:
        """The launches on record as ``launching`` or ``running``."""
        return self.records.unfinished()

    def claim(self, study_id: int, run_config: Mapping[str, ConfigValue]) -> Launch:
        """Record a new launch of ``study_id`` with ``run_config`` (see :func:`launch_config`) as ``launching``.

        Raises:
            LaunchInProgress: the study has a run launching or running.
        """
        return self.records.claim(study_id, run_config)

    def fail(self, study_id: int, error: str, *, status: str | None = None) -> Launch | None:
        """End the study's launch as ``failed`` with ``error`` (None: the study has no launch on record)."""
        return self.records.update(study_id, state="failed", error=error, status=status, ended_at=datetime.now(UTC))

    def finish(self, study_id: int, *, status: str | None, error: str | None) -> Launch:
        """End the study's launch as ``finished`` (its study ended on chain) with ``status`` and ``error``."""
        return self._update(study_id, state="finished", status=status, error=error, ended_at=datetime.now(UTC))

    def submit(self, study_id: int, *, resumed_from: int | None = None) -> Launch:
        """Submit the claimed study's run with its launch's run config; once the SuperLink accepts it, follow it in a
        thread and return.

        ``resumed_from``: the run this one replaces (the service resumes the study after a restart).

        Raises:
            CoordinatorConfigError: no SuperLink is configured (see :meth:`require_connection`).
            FlowerRunError: the SuperLink cannot be reached or refused the run.
            ValueError: a run-config value cannot be passed to Flower (see :func:`launch_config`).
            (On each, the launch is recorded as failed.)
        """
        try:
            launch = self.records.get(study_id)
            if launch is None:
                raise CoordinatorError(f"study {study_id} was not claimed before its run was submitted")
            connection = self.require_connection()
            with self._lock:  # two launches must not write config.toml at once
                write_connection(self.flwr_home, CONNECTION, connection)
            run = submit_run(self.app_dir, flwr_home=self.flwr_home, federation=CONNECTION,
                             run_config=launch.run_config)
        except BaseException as exc:  # whatever it is, the study must not stay "launching" (and so locked)
            self.fail(study_id, str(exc) if isinstance(exc, CoordinatorError | ValueError)
                      else f"submitting the run failed: {type(exc).__name__}: {exc}")
            raise
        now = datetime.now(UTC)
        resumed = {"resumed_from": resumed_from, "resumed_at": now} if resumed_from is not None else {}
        launch = self._update(study_id, state="running", run_id=run.run_id, status=None, error=None, ended_at=None,
                              **resumed)
        _log.info("study %d: run %d submitted", study_id, run.run_id, extra={"study_id": study_id,
                                                                              "run_id": run.run_id})
        self._start_follower(study_id, run)
        return launch

    def follow(self, study_id: int, run_id: int) -> Launch:
        """Follow again, in a thread, run ``run_id`` of the study, which an earlier start of the service submitted
        and the SuperLink still runs; the launch records it as ``running``.

        Raises:
            CoordinatorConfigError: no SuperLink is configured (see :meth:`require_connection`).
        """
        connection = self.require_connection()
        with self._lock:
            write_connection(self.flwr_home, CONNECTION, connection)
        launch = self._update(study_id, state="running", run_id=run_id, status=None, error=None, ended_at=None)
        since = (launch.resumed_at or launch.started_at).timestamp()
        # The timeout counts from the submission, not from this start of the service.
        started = time.monotonic() - max(0.0, time.time() - since)
        self._start_follower(study_id, SubmittedRun(run_id, self.flwr_home / "runs" / f"{run_id}.log", started))
        return launch

    def close(self, timeout: float = 10.0) -> None:
        """Stop following runs and wait for the followers to end; their launches stay ``running`` on record (the
        next start of the service takes them up again)."""
        self._detach.set()
        with self._lock:
            followers = list(self._followers)
        for follower in followers:
            follower.join(timeout)

    def _start_follower(self, study_id: int, run: SubmittedRun) -> None:
        follower = threading.Thread(target=self._follow, args=(study_id, run), name=f"study-{study_id}-run",
                                    daemon=True)
        with self._lock:
            self._followers = [t for t in self._followers if t.is_alive()] + [follower]
        follower.start()

    def _follow(self, study_id: int, run: SubmittedRun) -> None:
        ids = {"study_id": study_id, "run_id": run.run_id}
        try:
            result = follow_run(run, flwr_home=self.flwr_home, federation=CONNECTION, timeout=self.timeout,
                                detach=self._detach)
        except RunDetached:
            _log.info("study %d: run %d is no longer followed (the service stops); its launch stays running",
                      study_id, run.run_id, extra=ids)
        except FlowerRunError as exc:
            ended = exc.status is not None and exc.status.startswith("finished:")
            self.records.update(study_id, run_id_was=run.run_id, state="finished" if ended else "failed",
                                status=exc.status, error=str(exc), ended_at=datetime.now(UTC))
            _log.warning("study %d: run %d did not complete: %s", study_id, run.run_id, exc.status, extra=ids)
        except Exception as exc:  # a thread's failure would otherwise vanish: the launch says what happened
            _log.exception("study %d: following run %d failed", study_id, run.run_id)
            self.records.update(study_id, run_id_was=run.run_id, state="failed", ended_at=datetime.now(UTC),
                                error=f"following run {run.run_id} failed: {type(exc).__name__}: {exc}")
        else:
            self.records.update(study_id, run_id_was=run.run_id, state="finished", status=result.status,
                                ended_at=datetime.now(UTC))
            _log.info("study %d: run %d ended %s after %.0f s", study_id, run.run_id, result.status, result.seconds,
                      extra=ids)

    def _update(self, study_id: int, **changes: Any) -> Launch:
        launch = self.records.update(study_id, **changes)
        if launch is None:
            raise CoordinatorError(f"study {study_id} has no launch on record to update")
        return launch
