"""coordinator/federated/reply_pulls.py: the ServerApp waits 0.05 s, not 1 s, for a reply object not yet there."""

from __future__ import annotations

import inspect
import types

import flwr.superlink.grid.http_grid as http_grid
import pytest

from coordinator.federated.reply_pulls import REPLY_PULL_BACKOFF, shorten_reply_pull_backoff


def _flowers_own() -> object:
    # A ServerApp run in this worker before (a simulation) has already replaced the pull.
    current = http_grid.pull_objects
    return getattr(current, "func", current)


def test_flowers_grid_pulls_reply_objects_with_the_function_this_replaces() -> None:
    assert "all_object_contents = pull_objects(" in inspect.getsource(http_grid.HttpGrid.pull_messages)
    assert inspect.signature(_flowers_own()).parameters["initial_backoff"].default == 1  # type: ignore[arg-type]
    assert _flowers_own().__module__ == "flwr.supercore.inflatable.inflatable_utils"


def test_the_replaced_pull_is_flowers_own_with_the_short_first_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    flower_own = _flowers_own()
    monkeypatch.setattr(http_grid, "pull_objects", flower_own)  # put back after the test
    shorten_reply_pull_backoff()
    shorten_reply_pull_backoff()  # twice: still Flower's own inside, not a partial of a partial
    assert http_grid.pull_objects.func is flower_own  # type: ignore[attr-defined]
    assert http_grid.pull_objects.keywords == {"initial_backoff": REPLY_PULL_BACKOFF}  # type: ignore[attr-defined]


def test_a_grid_module_without_the_pull_is_refused() -> None:
    with pytest.raises(RuntimeError, match="pull_objects takes no initial_backoff"):
        shorten_reply_pull_backoff(types.ModuleType("other"))


def test_a_first_wait_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"reply-pull-backoff is 0 s; expected more than 0 and at most 10 s"):
        shorten_reply_pull_backoff(types.ModuleType("other"), backoff=0)
