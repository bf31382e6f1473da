"""node/federated/pacing.py and the command line of node/federated/run_supernode.py: which waits replace Flower's."""

from __future__ import annotations

import inspect
import time
import types
from typing import Any

import pytest

from node.federated.pacing import (
    FLOWER_IDLE_POLL,
    FLOWER_REPLY_POLL,
    PacedTime,
    Pacing,
    PacingError,
    install,
    paced_sleep,
)
from node.federated.run_supernode import parse_args, resident_command

PACING = Pacing(idle_poll=0.1, active_window=60.0, reply_poll=0.01, worker_poll=2.0, pull_backoff=0.02)


def test_the_idle_poll_is_short_while_the_node_had_a_message_within_the_window() -> None:
    assert paced_sleep(FLOWER_IDLE_POLL, PACING, since_message=59.0) == 0.1


def test_the_idle_poll_is_flowers_once_the_window_has_passed() -> None:
    assert paced_sleep(FLOWER_IDLE_POLL, PACING, since_message=61.0) == FLOWER_IDLE_POLL


def test_the_idle_poll_is_flowers_before_any_message() -> None:
    assert paced_sleep(FLOWER_IDLE_POLL, PACING, since_message=None) == FLOWER_IDLE_POLL


def test_the_reply_poll_is_shortened_always() -> None:
    assert paced_sleep(FLOWER_REPLY_POLL, PACING, since_message=None) == 0.01


def test_other_sleeps_are_left_as_they_are() -> None:
    assert paced_sleep(1.5, PACING, since_message=0.0) == 1.5


def test_flowers_supernode_loop_still_has_the_waits_and_names_this_paces() -> None:
    import flwr.supernode.start_client_internal as loop

    source = inspect.getsource(loop)
    assert source.count("time.sleep(3)") == 1
    assert source.count("time.sleep(0.5)") == 2
    assert "run_id = _pull_and_store_message(" in inspect.getsource(loop.start_client_internal)
    assert "obj_contents = pull_objects(" in inspect.getsource(loop._pull_and_store_message)
    assert "initial_backoff" in inspect.signature(loop.pull_objects).parameters
    assert loop.time is time


def _loop_module(returns: int | None) -> types.ModuleType:
    module = types.ModuleType("loop")
    module.time = time  # type: ignore[attr-defined]
    module._pull_and_store_message = lambda **_: returns  # type: ignore[attr-defined]
    module.pull_objects = lambda object_ids, **kwargs: {"ids": object_ids, **kwargs}  # type: ignore[attr-defined]
    return module


def test_the_supernodes_object_pulls_back_off_from_the_pacing_first() -> None:
    module = _loop_module(returns=None)
    install(module, PACING, on_message=lambda: None)
    assert module.pull_objects(["a"], pull_object_fn=print) == {"ids": ["a"], "pull_object_fn": print,
                                                                "initial_backoff": PACING.pull_backoff}


def test_a_stored_message_wakes_the_worker_and_opens_the_active_window() -> None:
    module, woken = _loop_module(returns=7), []
    paced = install(module, PACING, on_message=lambda: woken.append(1))
    assert module._pull_and_store_message(state=None) == 7
    assert woken == [1]
    since = paced.since_message()
    assert since is not None
    assert 0 <= since < 60
    assert module.time is paced


def test_no_message_neither_wakes_nor_opens_the_window() -> None:
    module, woken = _loop_module(returns=None), []
    paced = install(module, PACING, on_message=lambda: woken.append(1))
    assert module._pull_and_store_message() is None
    assert (woken, paced.since_message()) == ([], None)


def test_the_paced_time_forwards_everything_but_sleep() -> None:
    assert PacedTime(PACING).monotonic is time.monotonic


def test_a_loop_without_the_names_is_refused() -> None:
    with pytest.raises(PacingError, match="has no `time` module, `_pull_and_store_message` and `pull_objects` to pace"):
        install(types.ModuleType("other"), PACING, on_message=lambda: None)


def test_pacing_out_of_range_is_refused() -> None:
    with pytest.raises(PacingError, match=r"idle_poll is 5\.0 s; expected 0\.01 to 3 s"):
        Pacing(idle_poll=5.0)


def test_the_command_carries_the_pacing_to_the_supernode() -> None:
    cmd = resident_command(["--superlink", "127.0.0.1:9092", "--insecure"], PACING, clientapp="subprocess")
    assert cmd[1:3] == ["-m", "node.federated.run_supernode"]
    pacing, clientapp, flower = parse_args(cmd[3:])
    assert (pacing, clientapp, flower) == (PACING, "subprocess", ["--superlink", "127.0.0.1:9092", "--insecure"])


def test_flower_options_the_supernode_sets_itself_are_refused() -> None:
    with pytest.raises(ValueError, match=r"option --isolation is set by node\.federated\.run_supernode; leave it out"):
        resident_command(["--isolation=subprocess"])


def test_an_unknown_clientapp_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="clientapp is 'threads'; expected one of worker, subprocess"):
        resident_command([], clientapp="threads")


def test_while_waiting_for_a_reply_the_worker_is_woken_again_every_worker_poll() -> None:
    woken: list[int] = []
    paced = PacedTime(Pacing(reply_poll=0.01, worker_poll=0.01), on_reply_wait=lambda: woken.append(1))
    paced.message_received()  # the wake-up that came with the message
    for _ in range(3):
        paced.sleep(FLOWER_REPLY_POLL)  # each sleeps at least 0.01 s
    assert len(woken) >= 1


def test_no_wake_up_is_repeated_within_worker_poll_of_the_message() -> None:
    woken: list[int] = []
    paced = PacedTime(Pacing(reply_poll=0.01, worker_poll=60.0), on_reply_wait=lambda: woken.append(1))
    paced.message_received()
    for _ in range(3):
        paced.sleep(FLOWER_REPLY_POLL)
    assert woken == []


class _Refused(Exception):
    pass


def _flowers_loop() -> types.ModuleType:
    """Flower's own SuperNode loop functions, in a module of their own that install() may change."""
    import flwr.supernode.start_client_internal as loop

    module = types.ModuleType("paced-loop")
    module.time = time  # type: ignore[attr-defined]
    module._pull_and_store_message = loop._pull_and_store_message  # type: ignore[attr-defined]
    module.pull_objects = loop.pull_objects  # type: ignore[attr-defined]
    return module


def _message_of_a_run_that_stops_while_pulled(pull_and_store: Any, *, ids: list[str] | None = None,
                                              earlier_task: list[int] | None = None) -> tuple[Any, Any]:
    """Take one message of a known run whose objects the SuperLink refuses as the run just stopped; the state
    and object store it leaves."""
    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.app.message.message import remove_content_from_message
    from flwr.supercore.inflatable.inflatable_object import get_object_tree
    from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore
    from flwr.supercore.run import Run, RunNotRunningException
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

    run_id = 4242
    store = InMemoryObjectStore()
    state = InMemoryNodeState(store)
    state.set_node_id(7)
    state.store_run(Run.create_empty(run_id))  # a run this node had messages of before
    if earlier_task is not None:  # a message of another run, stored and waiting for the worker
        earlier_task.append(state.create_task(task_type="clientapp", run_id=run_id + 1, fab_hash="f"))
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = run_id, 0, 1
    message = Message(RecordDict({"config": ConfigRecord({"round": 2})}), dst_node_id=7, message_type="train")
    message.metadata.__dict__["_message_id"] = message.object_id
    tree = get_object_tree(message)
    bare = remove_content_from_message(message)
    if ids is not None:
        ids.append(message.object_id)

    def stopped(_run_id: int, _object_id: str) -> bytes:
        raise RunNotRunningException()

    def never(*_args: Any) -> Any:
        raise _Refused("not called for a known run")

    got = pull_and_store(state=state, object_store=store, node_config={}, receive=lambda: (bare, tree),
                         get_run=never, get_fab=never, pull_object=stopped, confirm_message_received=never,
                         trusted_entities=None)
    assert got is None  # Flower ignores the message of a run no longer running
    return state, store


def test_flower_leaves_the_task_of_a_message_whose_run_stopped_while_pulled_pending() -> None:
    """Why the wrapper below exists: Flower 1.41 itself leaves the task pending for a ClientApp to claim."""
    from flwr.common.constant import Status

    state, _ = _message_of_a_run_that_stops_while_pulled(_flowers_loop()._pull_and_store_message)
    assert [task.run_id for task in state.get_tasks(statuses=[Status.PENDING])] == [4242]


def test_the_paced_loop_finishes_that_task_as_failed_and_removes_its_message() -> None:
    from flwr.common.constant import Status, SubStatus

    module, woken, ids, earlier = _flowers_loop(), [], [], []
    paced = install(module, PACING, on_message=lambda: woken.append(1))
    state, store = _message_of_a_run_that_stops_while_pulled(module._pull_and_store_message, ids=ids,
                                                             earlier_task=earlier)
    assert [task.task_id for task in state.get_tasks(statuses=[Status.PENDING])] == earlier  # still the worker's
    (task,) = state.get_tasks(run_ids=[4242])
    assert (task.status.status, task.status.sub_status) == (Status.FINISHED, SubStatus.FAILED)
    assert "run stopped" in task.status.details
    assert state.get_messages_legacy(run_ids=[4242]) == []
    assert store.get(ids[0]) is None
    assert (woken, paced.since_message()) == ([], None)  # nothing for the worker


def test_a_task_that_appears_while_no_message_was_received_is_left_alone() -> None:
    from flwr.common.constant import Status

    waiting = []

    def loop_with_an_earlier_task(**kwargs: Any) -> Any:
        if not waiting:
            waiting.append(kwargs["state"].create_task(task_type="clientapp", run_id=99, fab_hash="f"))
        return None

    module = _loop_module(returns=None)
    module._pull_and_store_message = loop_with_an_earlier_task  # type: ignore[attr-defined]
    install(module, PACING, on_message=lambda: None)
    from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

    state = InMemoryNodeState(InMemoryObjectStore())
    module._pull_and_store_message(state=state, receive=lambda: None)  # the task appears; no message was received
    assert [task.task_id for task in state.get_tasks(statuses=[Status.PENDING])] == waiting
