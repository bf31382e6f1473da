"""A study's Flower run: the coordinator operator starts it on the SuperLink and follows the launch.

What the run produces (rounds, metrics, models) is shown by ``GET /v1/studies/{id}``.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from contracts.enums import Role
from contracts.errors import ContractRevert, TransactionFailed
from coordinator.api.deps import ServicesDep, SignedIn, SignedInDep
from coordinator.api.problems import PROBLEM_RESPONSES, Problem, revert_problem
from coordinator.errors import CoordinatorConfigError
from coordinator.federated.launches import Launch, LaunchInProgress, launch_config
from coordinator.federated.superlink import FlowerRunError
from coordinator.models.studies import StudyPublic, StudyRunPublic, StudyStart
from coordinator.run_config import RunConfigError
from coordinator.service import Services
from coordinator.study_view import StudyNotFound, study_public

router = APIRouter(tags=["studies"], responses=PROBLEM_RESPONSES)


def _operator(account: SignedIn) -> None:
    if not account.has(Role.COORDINATOR):
        raise Problem(403, "role-required", "Only the coordinator operator starts and follows runs",
                      f"{account.address} does not hold the COORDINATOR role on chain")


def _study(services: Services, study_id: int) -> StudyPublic:
    services.index.sync(force=True)  # starting is decided on the chain as it is now, not as it was a moment ago
    try:
        return study_public(services.index, study_id, services.settings.model_dir, services.task_names())
    except StudyNotFound as exc:
        raise Problem(404, "not-found", "No such study", str(exc)) from None


def _startable(view: StudyPublic) -> None:
    """Refuse a study that is neither running nor requested with every named hospital approving."""
    study_id, status = view.study_id, view.status
    if status in ("declined", "completed"):
        why = "a named hospital declined it" if status == "declined" else "its final model is anchored"
        raise Problem(409, "study-not-startable", f"The study is {status}",
                      f"study {study_id} is {status} ({why}); only a requested study with every approval, or a "
                      "running one, can be started", study_status=status)
    pending = [d.hospital for d in view.decisions if d.decision != "approved"]
    if status == "requested" and pending:
        raise Problem(409, "decisions-pending", "Named hospitals have not approved yet",
                      f"study {study_id} is requested and waits for {len(pending)} hospital(s) to approve: "
                      f"{', '.join(pending)}", study_status=status, pending=pending)


def _public(launch: Launch) -> StudyRunPublic:
    return StudyRunPublic(study_id=launch.study_id, state=launch.state,
                          run_id=None if launch.run_id is None else str(launch.run_id), status=launch.status,
                          error=launch.error, started_at=launch.started_at, ended_at=launch.ended_at,
                          resumed_from_run_id=None if launch.resumed_from is None else str(launch.resumed_from),
                          resumed_at=launch.resumed_at)


@router.post("/studies/{study_id}/start", status_code=202)
def start(study_id: int, account: SignedInDep, services: ServicesDep, response: Response,
          body: StudyStart | None = None) -> StudyRunPublic:
    """Start a study's Flower run on the SuperLink (coordinator operator only); 202 once the SuperLink accepted it.

    A requested study whose named hospitals all approved is first started on chain with the
    coordinator's key; a running one is launched again (after a failed launch). The run is
    followed in the background: ``GET /v1/studies/{id}/run`` shows the launch, ``GET
    /v1/studies/{id}`` what the run produces. One run per study at a time.
    """
    _operator(account)
    launcher = services.launcher
    try:
        launcher.require_connection()
    except CoordinatorConfigError as exc:
        raise Problem(503, "launch-unconfigured", "This service cannot launch runs", str(exc)) from None
    view = _study(services, study_id)
    _startable(view)
    if view.task is None:
        raise Problem(409, "unknown-task", "The study's task is not one this service runs",
                      f"study {study_id} names task code hash {view.task_code_hash}, which no task of this "
                      "service hashes to; the coordinator cannot run it")
    try:
        run_config = launch_config(launcher.app_dir, study_id=study_id, task=view.task,
                                   hospitals=len(view.decisions), overrides=(body or StudyStart()).run_config)
    except RunConfigError as exc:
        raise Problem(422, "invalid-run-config", "The run config is invalid", str(exc)) from None
    except CoordinatorConfigError as exc:
        raise Problem(503, "launch-unconfigured", "This service cannot launch runs", str(exc)) from None
    try:
        launcher.claim(study_id, run_config)
    except LaunchInProgress as exc:
        run_id = None if exc.launch.run_id is None else str(exc.launch.run_id)
        raise Problem(409, "run-in-progress", "The study's run is already under way", str(exc),
                      study_status=view.status, run_id=run_id) from None
    if view.status == "requested":
        try:
            services.exchange.studies.start(services.coordinator, study_id)
        except ContractRevert as exc:
            launcher.fail(study_id, f"the chain refused to start study {study_id}: {exc}")
            raise revert_problem(exc) from None
        except TransactionFailed as exc:  # e.g. a ServerApp's transaction took the key's nonce first
            launcher.fail(study_id, f"starting study {study_id} on chain failed: {exc}")
            raise Problem(503, "start-failed", "The start transaction failed", f"{exc}; start the study again",
                          headers={"Retry-After": "5"}) from None
        except BaseException as exc:
            launcher.fail(study_id, f"starting study {study_id} on chain failed: {type(exc).__name__}: {exc}")
            raise
    try:
        launch = launcher.submit(study_id)
    except CoordinatorConfigError as exc:
        raise Problem(503, "launch-unconfigured", "This service cannot launch runs", str(exc)) from None
    except FlowerRunError as exc:
        raise Problem(502, "run-not-submitted", "The SuperLink did not take the run",
                      f"study {study_id} is running on chain but its run was not submitted: {exc}; start it again "
                      "once the SuperLink is reachable", study_status="running") from None
    response.headers["Location"] = f"/v1/studies/{study_id}/run"
    return _public(launch)


@router.get("/studies/{study_id}/run")
def get_run(study_id: int, account: SignedInDep, services: ServicesDep) -> StudyRunPublic:
    """The latest launch of the study's run by this service, before a restart too (coordinator operator only)."""
    _operator(account)
    launch = services.launcher.current(study_id)
    if launch is None:
        raise Problem(404, "no-launch", "No run launched",
                      f"this service has never launched a run of study {study_id}")
    return _public(launch)
