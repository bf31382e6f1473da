"""The runs a SuperLink holds, read, followed and stopped through its Control API (what ``flwr ls``,
``flwr log --stream`` and ``flwr stop`` do, without a process each).

A restarted service asks which runs of its studies the SuperLink still counts as unfinished
(:mod:`coordinator.federated.resume`): each run carries its run config, whose ``study-id`` names
the study. Flower counts a run as unfinished until its ServerApp ends it, or until the SuperLink
misses its heartbeat for about a minute (Flower 1.41: ``HEARTBEAT_PATIENCE`` times a 30 s
interval); so a run whose ServerApp was just killed may still read ``running`` for that long.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from flwr.common.serde import user_config_from_proto
from flwr.proto.control_pb2 import (
    ListRunsRequest,
    ListRunsResponse,
    StopRunRequest,
    StopRunResponse,
    StreamLogsRequest,
    StreamLogsResponse,
)
from flwr.proto.run_pb2 import Run
from flwr.supercore.error.base import ApiErrorCode

from coordinator.federated.control import ControlClient, ControlError
from coordinator.run_config import RunConfigName

__all__ = ["LinkRun", "list_runs", "log_lines", "run_status", "stop_link_run"]

_PAGE = 100


@dataclass(frozen=True)
class LinkRun:
    """A run on the SuperLink: its id, Flower's status, the study its run config names, when it was submitted."""

    run_id: int
    status: str  # pending, starting, running, or finished:<how> (completed, failed, stopped)
    study_id: int | None  # the run config's study-id (None: a run of another app)
    pending_at: str  # ISO 8601, when the SuperLink accepted it

    @property
    def ended(self) -> bool:
        """Whether Flower counts the run as finished."""
        return self.status.startswith("finished")


def list_runs(control: ControlClient) -> list[LinkRun]:
    """Every run the SuperLink holds, oldest first.

    Raises:
        ControlUnavailable, ControlError: the SuperLink did not answer, or refused.
    """
    runs: dict[int, LinkRun] = {}
    skip = 0
    while True:
        answer = control.call("list-runs", ListRunsRequest(limit=_PAGE, skip=skip), ListRunsResponse)
        for run_id, run in answer.run_dict.items():
            status = _status_text(run)
            study = user_config_from_proto(run.override_config).get(RunConfigName.STUDY_ID)
            runs[int(run_id)] = LinkRun(int(run_id), status, study if isinstance(study, int) else None,
                                        run.pending_at)
        if len(answer.run_dict) < _PAGE:
            return sorted(runs.values(), key=lambda r: (r.pending_at, r.run_id))
        skip += _PAGE


def run_status(control: ControlClient, run_id: int) -> tuple[str, str]:
    """Flower's status of run ``run_id`` (``running``, ``finished:completed`` ...) and its details (failure details).

    Raises:
        ControlUnavailable, ControlError: the SuperLink did not answer, or refused (a run it does
            not know included).
    """
    answer = control.call("list-runs", ListRunsRequest(run_id=run_id), ListRunsResponse)
    if run_id not in answer.run_dict:
        raise ControlError(f"the SuperLink listed no run {run_id}", status=200, code=None)
    run = answer.run_dict[run_id]
    return _status_text(run), run.status.details


def log_lines(control: ControlClient, run_id: int) -> Iterator[str]:
    """What the ServerApp of run ``run_id`` logged and printed, from the start, line by line as it arrives.

    Each line keeps its newline (the last may lack one). The iteration ends when the run has
    finished and its whole log was sent; closing the generator (or the client, from another
    thread) stops it earlier.

    Raises:
        ControlUnavailable, ControlError: the SuperLink did not answer, refused (a run it does not
            know included), or broke off.
    """
    partial = ""
    for answer in control.stream("stream-logs", StreamLogsRequest(run_id=run_id, after_timestamp=0.0),
                                 StreamLogsResponse):
        *lines, partial = (partial + answer.log_output).split("\n")
        yield from (line + "\n" for line in lines)
    if partial:
        yield partial


def _status_text(run: Run) -> str:
    """Flower's status as ``flwr ls`` shows it: ``running``, or ``finished:<how>``."""
    return run.status.status + (f":{run.status.sub_status}" if run.status.sub_status else "")


def stop_link_run(control: ControlClient, run_id: int) -> bool:
    """Stop run ``run_id`` on the SuperLink; False if it had ended already (or the SuperLink does not know it).

    Raises:
        ControlUnavailable, ControlError: the SuperLink did not answer, or refused otherwise.
    """
    try:
        answer = control.call("stop-run", StopRunRequest(run_id=run_id), StopRunResponse)
    except ControlError as exc:
        if exc.code in (ApiErrorCode.RUN_ALREADY_FINISHED, ApiErrorCode.RUN_ID_NOT_FOUND):
            return False
        raise
    return bool(answer.success)
