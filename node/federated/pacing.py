"""How often a SuperNode asks for messages and looks for its ClientApp's reply: Flower's fixed waits, shortened.

Flower 1.41's SuperNode main loop (``flwr.supernode.start_client_internal``) waits with
``time.sleep`` at three places, none of them configurable:

- ``time.sleep(3)`` after asking the SuperLink for a message and finding none (the idle poll):
  every exchange of a round waits for it, up to 3 s, because a node asks for the next message
  as soon as it replied and the ServerApp is still collecting the other replies;
- ``time.sleep(0.5)`` between looks at its own in-memory state for the ClientApp's reply, and
  again between looks for a reply object not yet stored: up to 0.5 s per message;
- its pulls of a message's objects from the SuperLink (Flower's ``pull_objects``) wait 1 s, then
  2 s, 4 s ... (up to 10 s) for an object that is not there yet, which happens when the SuperNode
  asks while the ServerApp is still pushing them: the SuperLink lists a message as soon as it
  has it, before its objects.

:func:`install` changes these in this process only, without editing Flower: it replaces three
names of that module, which the loop looks up each time it uses them.

- ``time`` by a :class:`PacedTime` that forwards everything to :mod:`time` except a sleep of
  exactly Flower's 3 s or 0.5 s, which it shortens as :func:`paced_sleep` says: the idle poll
  becomes ``idle_poll`` while the node is active (it received a message within
  ``active_window`` seconds) and stays Flower's 3 s otherwise, so an idle hospital asks the
  SuperLink as rarely as before; the reply look becomes ``reply_poll`` (an in-memory check),
  and every ``worker_poll`` seconds of it calls ``on_message`` again (the worker's wake-up).
- ``_pull_and_store_message`` by a wrapper that calls Flower's own and, when it stored a
  message, records the time (for the active window) and calls ``on_message`` (the resident
  worker's wake-up, node/federated/run_supernode.py). When Flower's own gives up on a message
  because its run stopped while the objects were being pulled (``RunNotRunningException``, e.g.
  a coordinator that restarted and stopped the run it replaces), it has already created the
  message's ClientApp task and stored the message, and leaves both behind, pending; a
  ``flwr-clientapp`` per task would hang on that task alone, but the one resident worker claims
  the oldest pending task first and would wait on its missing objects (Flower's pull back-off,
  up to 2 h) while the next run's messages queue behind it. The wrapper therefore finishes such
  a task as failed and removes its message and objects, as Flower does when a pull fails;
- ``pull_objects`` by Flower's own with ``initial_backoff=pull_backoff`` (0.05 s, then 0.1 s,
  0.2 s ... up to Flower's 10 s; its limits of 500 tries and 2 h per pull stay).

A Flower version whose loop no longer has these names fails :func:`install` with
:class:`PacingError`; one whose waits have other values is left at them (nothing is shortened).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from logging import WARNING
from types import ModuleType
from typing import Any

from node.errors import NodeConfigError

__all__ = ["FLOWER_IDLE_POLL", "FLOWER_PULL_BACKOFF", "FLOWER_REPLY_POLL", "PACING_FIELDS", "PacedTime", "Pacing",
           "PacingError", "drop_left_behind", "install", "paced_sleep"]

#: Flower 1.41's fixed waits in ``flwr.supernode.start_client_internal`` (seconds), and the first
#: back-off of its object pulls (``flwr.supercore.constant.PULL_INITIAL_BACKOFF``).
FLOWER_IDLE_POLL = 3.0
FLOWER_REPLY_POLL = 0.5
FLOWER_PULL_BACKOFF = 1.0
#: The fields of :class:`Pacing`, as ``python -m node.federated.run_supernode`` takes them.
PACING_FIELDS = ("idle_poll", "active_window", "reply_poll", "worker_poll", "pull_backoff")


class PacingError(NodeConfigError):
    """A pacing value out of range, or a Flower whose SuperNode loop cannot be paced."""


@dataclass(frozen=True)
class Pacing:
    """The waits of a SuperNode and its resident ClientApp worker, in seconds.

    Attributes:
        idle_poll: between asks for a message while the node is active (Flower: 3 s always).
        active_window: how long after its last message a node counts as active; after that it
            asks every 3 s again, as Flower does.
        reply_poll: between looks for the ClientApp's reply (Flower: 0.5 s), an in-memory check.
        worker_poll: how often the SuperNode wakes the worker again while it waits for the reply
            to a stored message (the first wake-up comes when the message is stored; a worker
            started since, or one that missed it, claims the message then).
        pull_backoff: the first wait for a message's object the SuperLink does not have yet
            (Flower: 1 s); each further wait doubles, up to Flower's 10 s.
    """

    idle_poll: float = 0.2
    active_window: float = 300.0
    reply_poll: float = 0.02
    worker_poll: float = 5.0
    pull_backoff: float = 0.05

    def __post_init__(self) -> None:
        limits = {"idle_poll": (0.01, FLOWER_IDLE_POLL), "active_window": (0.0, 86400.0),
                  "reply_poll": (0.001, FLOWER_REPLY_POLL), "worker_poll": (0.01, 60.0),
                  "pull_backoff": (0.01, FLOWER_PULL_BACKOFF)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise PacingError(f"{name} is {value!r} s; expected {low:g} to {high:g} s")

    def args(self) -> list[str]:
        """The command-line options of ``python -m node.federated.run_supernode`` that give these values."""
        return [f"--{name.replace('_', '-')}={getattr(self, name)!r}" for name in PACING_FIELDS]


def paced_sleep(seconds: float, pacing: Pacing, since_message: float | None) -> float:
    """Return how long to sleep where Flower's SuperNode loop asks for ``seconds``.

    Parameters:
        seconds: what Flower's code passes to ``time.sleep``.
        pacing: the waits to use instead.
        since_message: seconds since the node last received a message; None: never.
    """
    if seconds == FLOWER_IDLE_POLL:
        active = since_message is not None and since_message <= pacing.active_window
        return pacing.idle_poll if active else FLOWER_IDLE_POLL
    if seconds == FLOWER_REPLY_POLL:
        return pacing.reply_poll
    return seconds


class PacedTime:
    """Stands in for :mod:`time` inside Flower's SuperNode loop: sleeps as :func:`paced_sleep` says."""

    def __init__(self, pacing: Pacing, on_reply_wait: Callable[[], None] | None = None) -> None:
        self.pacing = pacing
        self.on_reply_wait = on_reply_wait
        self._last_message: float | None = None
        self._last_nudge = 0.0
        self._lock = threading.Lock()

    def message_received(self) -> None:
        """Record that the node received a message now (it is active for ``active_window``)."""
        with self._lock:
            self._last_message = self._last_nudge = time.monotonic()

    def since_message(self) -> float | None:
        """Seconds since the last message, None if there was none."""
        with self._lock:
            return None if self._last_message is None else time.monotonic() - self._last_message

    def sleep(self, seconds: float) -> None:
        """Sleep what :func:`paced_sleep` gives for ``seconds``; while waiting for a reply, call
        ``on_reply_wait`` every ``worker_poll`` seconds."""
        if seconds == FLOWER_REPLY_POLL and self.on_reply_wait is not None:
            with self._lock:
                due = time.monotonic() - self._last_nudge >= self.pacing.worker_poll
                if due:
                    self._last_nudge = time.monotonic()
            if due:
                self.on_reply_wait()
        time.sleep(paced_sleep(seconds, self.pacing, self.since_message()))

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def install(loop_module: ModuleType, pacing: Pacing, on_message: Callable[[], None]) -> PacedTime:
    """Pace Flower's SuperNode loop in this process; call ``on_message`` after each message it stores.

    Parameters:
        loop_module: ``flwr.supernode.start_client_internal``.
        pacing: the waits.
        on_message: called (in the loop's thread) after a message was pulled and stored with its
            objects, and again every ``worker_poll`` seconds while the loop waits for its reply.

    Returns:
        The :class:`PacedTime` now standing in for ``time`` in that module.

    Raises:
        PacingError: the module lacks ``time`` or ``_pull_and_store_message`` (another Flower version).
    """
    pull = getattr(loop_module, "_pull_and_store_message", None)
    pull_objects = getattr(loop_module, "pull_objects", None)
    if getattr(loop_module, "time", None) is not time or not callable(pull) or not callable(pull_objects):
        raise PacingError(f"{loop_module.__name__} has no `time` module, `_pull_and_store_message` and `pull_objects` "
                          "to pace: this Flower version is not the 1.41 that node/federated/pacing.py was written for; "
                          "start the SuperNode with isolation 'subprocess'")
    paced = PacedTime(pacing, on_reply_wait=on_message)

    def pull_and_store(*args: Any, **kwargs: Any) -> Any:
        state, receive = kwargs.get("state"), kwargs.get("receive")
        received: list[str] = []
        pending: set[int] | None = None  # the tasks pending when a message came (Flower makes its task next)
        if callable(receive):
            def receiving() -> Any:
                nonlocal pending
                got = receive()
                if got is not None:
                    received.append(got[0].metadata.message_id)
                    pending = _pending_tasks(state)
                return got

            kwargs["receive"] = receiving
        run_id = pull(*args, **kwargs)
        if run_id is not None:  # a message was stored: its task waits for the worker
            paced.message_received()
            on_message()
        elif received and pending is not None:
            drop_left_behind(state, kwargs.get("object_store"), pending, received)
        return run_id

    loop_module.time = paced  # type: ignore[attr-defined]
    loop_module._pull_and_store_message = pull_and_store  # type: ignore[attr-defined]
    loop_module.pull_objects = functools.partial(pull_objects, initial_backoff=pacing.pull_backoff)  # type: ignore[attr-defined]
    return paced


def _pending_tasks(state: Any) -> set[int] | None:
    from flwr.common.constant import Status  # here: this module is imported where Flower is not (node CLI)

    if state is None or not callable(getattr(state, "get_tasks", None)):
        return None
    return {task.task_id for task in state.get_tasks(statuses=[Status.PENDING])}


def drop_left_behind(state: Any, object_store: Any, pending_before: Collection[int],
                     message_ids: list[str]) -> list[int]:
    """Finish as failed the tasks Flower's loop left pending for a message it ignored, and remove that message.

    Parameters:
        state: the SuperNode's ``NodeState``.
        object_store: its ``ObjectStore`` (None: no objects to remove).
        pending_before: the ids of the tasks pending when the message was received.
        message_ids: the ids of the messages it received and then ignored.

    Returns:
        The ids of the tasks finished here.
    """
    from flwr.common.constant import Status, SubStatus
    from flwr.common.logger import log

    dropped = [task for task in state.get_tasks(statuses=[Status.PENDING]) if task.task_id not in pending_before]
    for task in dropped:
        state.finish_task(task.task_id, SubStatus.FAILED,
                          "its message was not received: the run stopped while its objects were pulled")
        log(WARNING, "Dropped ClientApp task %d of run %d: its message was not received (the run stopped meanwhile)",
            task.task_id, task.run_id)
    if dropped:
        state.delete_messages(message_ids=message_ids)
        if object_store is not None:
            for message_id in message_ids:
                object_store.delete(message_id)
    return [task.task_id for task in dropped]
