"""The service's launches of studies on the SuperLink: one run per study at a time, each followed in a thread.

``POST /v1/studies/{id}/start`` claims the study (:meth:`Launcher.claim`: a second claim while
a run is launching or running is refused), sends ``start`` on chain when the study is only
requested, and submits the run (:meth:`Launcher.submit`, which returns once the SuperLink has
accepted it and leaves a thread following it to its end). ``GET /v1/studies/{id}/run`` reads
:meth:`Launcher.current`. What the launcher knows lives in this process: after a restart it
knows no launch, while the runs it submitted go on on the SuperLink. See docs/federated.md.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from coordinator.core.config import CoordinatorSettings
from coordinator.errors import CoordinatorConfigError, CoordinatorError
from coordinator.federated.flower_config import ConfigValue, checked_config, read_app_config
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

LaunchState = Literal["launching", "running", "finished", "failed"]
_log = logging.getLogger("metai.coordinator.launches")
#: Run-config names the study itself sets; a launch may not override them.
_FROM_THE_STUDY = (RunConfigName.STUDY_ID, RunConfigName.TASK)


@dataclass(frozen=True)
class Launch:
    """A launch of a study's run: ``launching`` (being submitted), ``running``, ``finished`` or ``failed``.

    ``finished`` means Flower reports the run ended; ``status`` says how (``finished:completed``,
    ``finished:failed``, ``finished:stopped``) and ``error`` why, when it did not complete.
    ``failed`` means the launch itself failed (the chain refused to start the study, the
    SuperLink refused the run or could not be reached, the run outlived the timeout); ``error``
    says why.
    """

    study_id: int
    state: LaunchState
    started_at: datetime
    run_id: int | None = None
    status: str | None = None
    error: str | None = None
    ended_at: datetime | None = None


class LaunchInProgress(CoordinatorError, RuntimeError):
    """The study already has a run launching or running in this service."""

    def __init__(self, launch: Launch) -> None:
        run = f" (run {launch.run_id})" if launch.run_id is not None else ""
        super().__init__(f"study {launch.study_id} already has a run {launch.state}{run}; one run per study at a time")
        self.launch = launch


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
    """The runs this service launches on the SuperLink, one per study at a time."""

    def __init__(self, *, connection: SuperLinkConnection | None, flwr_home: Path, app_dir: Path,
                 timeout: float) -> None:
        """Launch into the SuperLink of ``connection`` (None: launching is refused), with FLWR_HOME ``flwr_home``."""
        self.connection = connection
        self.flwr_home = flwr_home
        self.app_dir = app_dir
        self.timeout = timeout
        self._lock = threading.Lock()
        self._launches: dict[int, Launch] = {}
        self._followers: list[threading.Thread] = []
        self._detach = threading.Event()

    @classmethod
    def from_settings(cls, settings: CoordinatorSettings) -> Launcher:
        """The launcher the settings describe (``superlink*``, ``flwr_home``, ``flower_app``, ``run_timeout``)."""
        return cls(connection=superlink_connection(settings), flwr_home=settings.flwr_home,
                   app_dir=settings.flower_app or APP_DIR, timeout=settings.run_timeout)

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

    def current(self, study_id: int) -> Launch | None:
        """The study's latest launch in this service, or None."""
        with self._lock:
            return self._launches.get(study_id)

    def claim(self, study_id: int) -> Launch:
        """Record a new launch of ``study_id`` as ``launching``.

        Raises:
            LaunchInProgress: the study has a run launching or running.
        """
        with self._lock:
            earlier = self._launches.get(study_id)
            if earlier is not None and earlier.state in ("launching", "running"):
                raise LaunchInProgress(earlier)
            launch = Launch(study_id, "launching", datetime.now(UTC))
            self._launches[study_id] = launch
            return launch

    def fail(self, study_id: int, error: str, *, status: str | None = None) -> Launch:
        """End the study's claimed launch as ``failed`` with ``error``."""
        return self._update(study_id, state="failed", error=error, status=status, ended_at=datetime.now(UTC))

    def submit(self, study_id: int, run_config: Mapping[str, ConfigValue]) -> Launch:
        """Submit the claimed study's run; once the SuperLink accepts it, follow it in a thread and return.

        Raises:
            CoordinatorConfigError: no SuperLink is configured (see :meth:`require_connection`).
            FlowerRunError: the SuperLink cannot be reached or refused the run.
            ValueError: a run-config value cannot be passed to Flower (see :func:`launch_config`).
            (On each, the launch is recorded as failed.)
        """
        try:
            connection = self.require_connection()
            with self._lock:  # two launches must not write config.toml at once
                write_connection(self.flwr_home, CONNECTION, connection)
            run = submit_run(self.app_dir, flwr_home=self.flwr_home, federation=CONNECTION, run_config=run_config)
        except BaseException as exc:  # whatever it is, the study must not stay "launching" (and so locked)
            self.fail(study_id, str(exc) if isinstance(exc, CoordinatorError | ValueError)
                      else f"submitting the run failed: {type(exc).__name__}: {exc}")
            raise
        launch = self._update(study_id, state="running", run_id=run.run_id)
        _log.info("study %d: run %d submitted", study_id, run.run_id, extra={"study_id": study_id,
                                                                              "run_id": run.run_id})
        follower = threading.Thread(target=self._follow, args=(study_id, run), name=f"study-{study_id}-run",
                                    daemon=True)
        with self._lock:
            self._followers = [t for t in self._followers if t.is_alive()] + [follower]
        follower.start()
        return launch

    def close(self, timeout: float = 10.0) -> None:
        """Stop following runs (they go on on the SuperLink) and wait for the followers to end."""
        self._detach.set()
        with self._lock:
            followers = list(self._followers)
        for follower in followers:
            follower.join(timeout)

    def _follow(self, study_id: int, run: SubmittedRun) -> None:
        try:
            result = follow_run(run, flwr_home=self.flwr_home, federation=CONNECTION, timeout=self.timeout,
                                detach=self._detach)
        except RunDetached as exc:
            self.fail(study_id, str(exc))
        except FlowerRunError as exc:
            ended = exc.status is not None and exc.status.startswith("finished:")
            self._update(study_id, state="finished" if ended else "failed", status=exc.status, error=str(exc),
                         ended_at=datetime.now(UTC))
            _log.warning("study %d: run %d did not complete: %s", study_id, run.run_id, exc.status,
                         extra={"study_id": study_id, "run_id": run.run_id})
        except Exception as exc:  # a thread's failure would otherwise vanish: the launch says what happened
            _log.exception("study %d: following run %d failed", study_id, run.run_id)
            self.fail(study_id, f"following run {run.run_id} failed: {type(exc).__name__}: {exc}")
        else:
            self._update(study_id, state="finished", status=result.status, ended_at=datetime.now(UTC))
            _log.info("study %d: run %d ended %s after %.0f s", study_id, run.run_id, result.status, result.seconds,
                      extra={"study_id": study_id, "run_id": run.run_id})

    def _update(self, study_id: int, **changes: object) -> Launch:
        with self._lock:
            launch = dataclasses.replace(self._launches[study_id], **changes)  # type: ignore[arg-type]
            self._launches[study_id] = launch
            return launch
