"""When the service starts, take up the launches a stopped (or killed) service left ``launching`` or ``running``.

For each such launch the chain says where the study stands and the SuperLink which of its runs
are unfinished (:func:`plan` decides, :func:`resume_launches` acts and logs one line per study):

- the study is RUNNING on chain and a run of it is still alive on the SuperLink: follow that run
  again (an external SuperLink that kept running; never a second run beside it);
- the study is RUNNING and no run of it is alive: submit the run again with the launch's run
  config; the ServerApp continues after the last round anchored on chain
  (:mod:`coordinator.federation`), so no anchored round is trained twice;
- the study is COMPLETED on chain: the launch is recorded ``finished``;
- the study is still REQUESTED (the service stopped before ``start`` was mined), or it was
  withdrawn: the launch is recorded ``failed``, saying why; nothing runs.

A SuperLink the service runs itself (``superlink=managed``) was started anew with the service:
none of its earlier runs has a ServerApp any more, and Flower would count one as ``running``
until it misses its heartbeat (about a minute) or start a ``pending`` one again. Those runs are
stopped before anything else, so no run of a study goes on beside the one submitted now.

What fails for one study (the chain or the SuperLink did not answer, the run was refused) is
recorded on its launch as ``failed`` and logged; the others are resumed all the same, and the
service runs on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from contracts.enums import StudyStatus
from contracts.studies import StudyClient, StudyRecord
from coordinator.federated.control import ControlClient, ControlUnavailable
from coordinator.federated.launch_records import Launch
from coordinator.federated.launches import Launcher
from coordinator.federated.superlink_runs import LinkRun, list_runs, stop_link_run

__all__ = ["Plan", "Resumed", "plan", "resume_launches"]

_log = logging.getLogger("metai.coordinator.resume")
Action = Literal["follow", "submit", "finish", "fail"]
#: Seconds between two tries to read the SuperLink's runs.
_LIST_PAUSE = 2.0


@dataclass(frozen=True)
class Plan:
    """What to do with one unfinished launch: ``follow`` run ``run_id``, ``submit`` a new run, ``finish`` or
    ``fail`` the launch (``status``, ``reason``); in each case stop the runs ``stop`` first."""

    action: Action
    reason: str
    run_id: int | None = None
    stop: tuple[int, ...] = ()
    status: str | None = None


@dataclass(frozen=True)
class Resumed:
    """What the service did with one unfinished launch as it started (``error``: it failed, and why)."""

    study_id: int
    action: Action | Literal["error"]
    earlier_run_id: int | None  # the launch's run before the restart
    run_id: int | None  # the run followed or submitted
    stopped: tuple[int, ...]
    detail: str


def plan(launch: Launch, study: StudyRecord, runs: Sequence[LinkRun], *, superlink_restarted: bool) -> Plan:
    """Decide what to do with ``launch``, which a stopped service left launching or running.

    Parameters:
        launch: the launch on record.
        study: the study as the chain holds it now.
        runs: the SuperLink's runs of this study, oldest first.
        superlink_restarted: the SuperLink was started anew with the service (managed): none of
            its earlier runs is alive, whatever Flower says of them yet.
    """
    unfinished = [run for run in runs if not run.ended]
    stop = tuple(run.run_id for run in unfinished) if superlink_restarted else ()
    alive = [] if superlink_restarted else unfinished
    recorded = next((run for run in runs if run.run_id == launch.run_id), None)
    study_id, status = launch.study_id, study.status
    if alive and status in (StudyStatus.RUNNING, StudyStatus.COMPLETED):
        chosen = recorded if recorded in alive else alive[-1]
        others = tuple(run.run_id for run in alive if run is not chosen)  # one run per study: the rest must go
        return Plan("follow", f"run {chosen.run_id} still runs on the SuperLink ({chosen.status})",
                    run_id=chosen.run_id, stop=others)
    if status == StudyStatus.RUNNING:
        left = study.rounds - study.rounds_completed
        gone = "no run" if launch.run_id is None else f"run {launch.run_id} did not survive the restart"
        return Plan("submit", f"{gone}; {study.rounds_completed} of {study.rounds} rounds are anchored on chain, "
                              f"{left} to run", stop=stop)
    if status == StudyStatus.COMPLETED:
        ended = recorded.status if recorded is not None and recorded.ended else None
        return Plan("finish", f"study {study_id} was completed on chain"
                              + (f"; run {launch.run_id} ended {ended}" if ended else ""), stop=stop, status=ended)
    if status == StudyStatus.REQUESTED:
        return Plan("fail", f"the service stopped before study {study_id} was started on chain; start it again",
                    stop=stop)
    return Plan("fail", f"study {study_id} is {status.name.lower()} on chain; it will not run", stop=stop)


def resume_launches(launcher: Launcher, studies: StudyClient, *, list_tries: int = 5) -> list[Resumed]:
    """Take up every launch on record as launching or running (see the module's docstring); return what was done.

    ``list_tries``: how many times to ask the SuperLink for its runs, 2 s apart (an external
    SuperLink may be restarting too). Nothing here raises: a failure is recorded on the launch it
    concerns and logged.
    """
    launches = launcher.unfinished()
    if not launches:
        return []
    try:
        with launcher.control() as control:
            runs = _runs(control, list_tries)
    except Exception as exc:  # nothing can be resumed safely without knowing which runs are alive
        why = f"cannot tell which runs the SuperLink still runs ({exc})"
        return [_failed(launcher, launch, why) for launch in launches]
    done = []
    for launch in launches:
        if launcher.detached:  # the service is stopping: the rest stay on record for its next start
            break
        of_study = [run for run in runs if run.study_id == launch.study_id]
        try:
            done.append(_resume(launcher, studies, launch, of_study))
        except Exception as exc:
            done.append(_failed(launcher, launch, f"{type(exc).__name__}: {exc}"))
    return done


def _runs(control: ControlClient, tries: int) -> list[LinkRun]:
    for _ in range(tries - 1):
        try:
            return list_runs(control)
        except ControlUnavailable:
            time.sleep(_LIST_PAUSE)
    return list_runs(control)


def _resume(launcher: Launcher, studies: StudyClient, launch: Launch, runs: list[LinkRun]) -> Resumed:
    study_id, earlier = launch.study_id, launch.run_id
    decided = plan(launch, studies.study(study_id), runs, superlink_restarted=launcher.owns_superlink)
    stopped: list[int] = []
    if decided.stop:
        with launcher.control() as control:
            stopped = [run_id for run_id in decided.stop if stop_link_run(control, run_id)]
    ids = {"study_id": study_id, "run_id": earlier}
    stop_note = f" (stopped on the SuperLink: {', '.join(map(str, stopped))})" if stopped else ""
    run_id: int | None = None
    if decided.action == "follow":
        assert decided.run_id is not None
        run_id = launcher.follow(study_id, decided.run_id).run_id
        _log.info("study %d: resumed after the restart: %s; following it again%s", study_id, decided.reason,
                  stop_note, extra=ids)
    elif decided.action == "submit":
        run_id = launcher.submit(study_id, resumed_from=earlier).run_id
        _log.info("study %d: resumed after the restart: %s; submitted run %s with the same run config%s",
                  study_id, decided.reason, run_id, stop_note, extra=ids)
    elif decided.action == "finish":
        launcher.finish(study_id, status=decided.status,
                        error=None if decided.status == "finished:completed" else decided.reason)
        _log.info("study %d: not resumed: %s%s", study_id, decided.reason, stop_note, extra=ids)
    else:
        launcher.fail(study_id, decided.reason)
        _log.warning("study %d: not resumed: %s%s", study_id, decided.reason, stop_note, extra=ids)
    return Resumed(study_id, decided.action, earlier, run_id, tuple(stopped), decided.reason)


def _failed(launcher: Launcher, launch: Launch, why: str) -> Resumed:
    detail = f"resuming study {launch.study_id} after the restart failed: {why}; start it again"
    try:
        launcher.fail(launch.study_id, detail)
    except Exception as exc:  # the database too: the log is all that is left
        detail += f" (recording this failed too: {type(exc).__name__}: {exc})"
    _log.error("study %d: %s", launch.study_id, detail, extra={"study_id": launch.study_id,
                                                                 "run_id": launch.run_id})
    return Resumed(launch.study_id, "error", launch.run_id, None, (), detail)
