"""The ServerApp's pulls of reply objects: Flower's first back-off of 1 s, shortened.

Flower 1.41's ServerApp (``HttpGrid.pull_messages`` in ``flwr.superlink.grid.http_grid``) pulls
each reply's objects with ``pull_objects``, which waits 1 s, then 2 s, 4 s ... (up to 10 s) for
an object the SuperLink does not have yet. The SuperLink lists a reply as soon as the SuperNode
has sent it, before the SuperNode has pushed its objects (one request each), so a ServerApp that
looks for replies every ``poll-interval`` (0.2 s) often finds one half-pushed and then waits a
whole second. :func:`shorten_reply_pull_backoff` replaces ``pull_objects`` in that module, in the
ServerApp's own process, by Flower's own function with a first wait of the run config's
``reply-pull-backoff`` (:data:`REPLY_PULL_BACKOFF`, 0.05 s), then twice as long each time up to
Flower's 10 s; its limits of 500 tries and 2 h per pull stay, and 1 gives Flower's own behaviour.
A hospital's SuperNode does the same for the messages it pulls (node/federated/pacing.py). See
docs/flower.md.
"""

from __future__ import annotations

import functools
import inspect
from types import ModuleType

__all__ = ["REPLY_PULL_BACKOFF", "shorten_reply_pull_backoff"]

#: Seconds of the first wait for a reply object the SuperLink does not have yet (Flower: 1 s).
REPLY_PULL_BACKOFF = 0.05
_FLOWER_CAP = 10.0  # flwr.supercore.constant.PULL_BACKOFF_CAP


def shorten_reply_pull_backoff(grid_module: ModuleType | None = None, backoff: float = REPLY_PULL_BACKOFF) -> None:
    """Make the ServerApp's reply pulls wait ``backoff`` first for an object not yet there.

    Parameters:
        grid_module: the module whose ``pull_objects`` the grid calls; None: Flower's
            ``flwr.superlink.grid.http_grid``.
        backoff: seconds of the first wait, more than 0 and at most 10.

    Raises:
        ValueError: ``backoff`` is out of range.
        RuntimeError: the module has no ``pull_objects`` taking ``initial_backoff`` (another Flower).
    """
    if not 0 < backoff <= _FLOWER_CAP:
        raise ValueError(f"reply-pull-backoff is {backoff!r} s; expected more than 0 and at most {_FLOWER_CAP:g} s")
    if grid_module is None:
        import flwr.superlink.grid.http_grid

        grid_module = flwr.superlink.grid.http_grid
    module: ModuleType = grid_module
    current = getattr(module, "pull_objects", None)
    flower_own = getattr(current, "func", current)  # once replaced, Flower's own is inside the partial
    if not callable(flower_own) or "initial_backoff" not in inspect.signature(flower_own).parameters:
        raise RuntimeError(f"{module.__name__}.pull_objects takes no initial_backoff: this is not the Flower "
                           "1.41 that coordinator/federated/reply_pulls.py was written for")
    setattr(module, "pull_objects", functools.partial(flower_own, initial_backoff=backoff))  # noqa: B010
