"""What the service knows of its launches, kept in its database so that a restart does not forget them.

Each study has at most one launch on record, its latest (table ``study_launches``): the run
config it was submitted with, Flower's run id, where it stands. :class:`LaunchRecords` claims a
study for a launch (refused while its launch is ``launching`` or ``running``, in this process or
any other on the same database), changes a launch as it goes, and lists the launches a stopped
service left unfinished (:mod:`coordinator.federated.resume` takes them up again).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, cast

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from coordinator.core.db import Database
from coordinator.errors import CoordinatorError
from coordinator.federated.flower_config import ConfigValue
from coordinator.models.tables import StudyLaunch, utcnow

__all__ = ["ACTIVE", "Launch", "LaunchInProgress", "LaunchRecords", "LaunchState"]

LaunchState = Literal["launching", "running", "finished", "failed"]
#: The states in which a launch holds its study: nobody may launch it again meanwhile.
ACTIVE: tuple[LaunchState, ...] = ("launching", "running")
_CHANGEABLE = frozenset({"state", "run_id", "status", "error", "ended_at", "resumed_from", "resumed_at"})


@dataclass(frozen=True)
class Launch:
    """A launch of a study's run: ``launching`` (being submitted), ``running``, ``finished`` or ``failed``.

    ``finished`` means Flower reports the run ended, or the chain says the study ended while the
    service was stopped; ``status`` says how (``finished:completed``, ``finished:failed``,
    ``finished:stopped``) and ``error`` why, when it did not complete. ``failed`` means the launch
    itself failed (the chain refused to start the study, the SuperLink refused the run or could
    not be reached, the run outlived the timeout, resuming it after a restart failed); ``error``
    says why. ``resumed_from`` is the run this launch's run replaced when the service resumed the
    study after a restart.
    """

    study_id: int
    state: LaunchState
    started_at: datetime
    run_config: Mapping[str, ConfigValue] = field(default_factory=dict)
    run_id: int | None = None
    status: str | None = None
    error: str | None = None
    ended_at: datetime | None = None
    resumed_from: int | None = None
    resumed_at: datetime | None = None


class LaunchInProgress(CoordinatorError, RuntimeError):
    """The study already has a run launching or running in this service."""

    def __init__(self, launch: Launch) -> None:
        run = f" (run {launch.run_id})" if launch.run_id is not None else ""
        super().__init__(f"study {launch.study_id} already has a run {launch.state}{run}; one run per study at a time")
        self.launch = launch


class LaunchRecords:
    """The launches on record in the service's database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, study_id: int) -> Launch | None:
        """The study's latest launch, or None if it was never launched."""
        with self.db.reading() as session:
            row = session.get(StudyLaunch, study_id)
            return None if row is None else _launch(row)

    def unfinished(self) -> list[Launch]:
        """The launches still ``launching`` or ``running``, by study id."""
        with self.db.reading() as session:
            rows = session.scalars(select(StudyLaunch).where(StudyLaunch.state.in_(ACTIVE))
                                   .order_by(StudyLaunch.study_id)).all()
            return [_launch(row) for row in rows]

    def claim(self, study_id: int, run_config: Mapping[str, ConfigValue]) -> Launch:
        """Record a new launch of ``study_id`` with ``run_config`` as ``launching`` (it replaces an ended one).

        Raises:
            LaunchInProgress: the study's launch is launching or running.
        """
        now = utcnow()
        try:
            with self.db.session() as session:
                row = session.get(StudyLaunch, study_id, with_for_update=True)
                if row is not None and row.state in ACTIVE:
                    raise LaunchInProgress(_launch(row))
                if row is None:
                    row = StudyLaunch(study_id=study_id)
                    session.add(row)
                row.state, row.run_config, row.run_id, row.status, row.error = "launching", _json(run_config), \
                    None, None, None
                row.started_at, row.ended_at, row.resumed_from, row.resumed_at, row.updated_at = now, None, None, \
                    None, now
                claimed = _launch(row)
        except IntegrityError:  # another process inserted the study's first launch at the same moment
            earlier = self.get(study_id)
            assert earlier is not None
            raise LaunchInProgress(earlier) from None
        return claimed

    def update(self, study_id: int, *, run_id_was: int | Literal["any"] | None = "any",
               **changes: Any) -> Launch | None:
        """Change the study's launch; with ``run_id_was``, only if its run is still that one.

        A follower of a run passes its run's id, so that it never overwrites a newer launch of the
        study. ``changes`` are :class:`Launch` fields (``state``, ``run_id``, ``status``, ``error``,
        ``ended_at``, ``resumed_from``, ``resumed_at``). Returns the launch as changed, or None when
        there is no launch or its run is another.
        """
        with self.db.session() as session:
            row = session.get(StudyLaunch, study_id, with_for_update=True)
            if row is None or (run_id_was != "any" and _run_id(row.run_id) != run_id_was):
                return None
            for name, value in changes.items():
                if name not in _CHANGEABLE:
                    raise TypeError(f"a launch's {name!r} cannot be changed; change one of {sorted(_CHANGEABLE)}")
                if name in ("run_id", "resumed_from") and value is not None:
                    value = str(value)
                elif isinstance(value, datetime):
                    value = value.astimezone(UTC).replace(tzinfo=None)
                setattr(row, name, value)
            row.updated_at = utcnow()
            return _launch(row)


def _json(run_config: Mapping[str, ConfigValue]) -> str:
    return json.dumps(dict(run_config), sort_keys=True, allow_nan=False)


def _run_id(text: str | None) -> int | None:
    return None if text is None else int(text)


def _aware(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _launch(row: StudyLaunch) -> Launch:
    started = _aware(row.started_at)
    assert started is not None
    return Launch(
        study_id=row.study_id, state=cast(LaunchState, row.state), started_at=started,
        run_config=json.loads(row.run_config), run_id=_run_id(row.run_id), status=row.status, error=row.error,
        ended_at=_aware(row.ended_at), resumed_from=_run_id(row.resumed_from), resumed_at=_aware(row.resumed_at))
