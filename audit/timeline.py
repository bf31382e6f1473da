"""A value as it changes from block to block, replayed from events in chain order."""

from __future__ import annotations

from bisect import bisect_right
from typing import Generic, TypeVar

from audit.errors import ReplayError

T = TypeVar("T")


class Timeline(Generic[T]):
    """The successive values of one thing (a consent, a role membership) and the blocks they took effect in."""

    def __init__(self) -> None:
        self._blocks: list[int] = []
        self._values: list[T] = []

    def set(self, block: int, value: T) -> None:
        """Record that ``value`` holds from the end of ``block`` on.

        Raises:
            ReplayError: ``block`` is before the last change recorded (events out of chain order).
        """
        if self._blocks and block < self._blocks[-1]:
            raise ReplayError(f"a change in block {block} replayed after one in block {self._blocks[-1]}: "
                              "events must be replayed in chain order")
        self._blocks.append(block)
        self._values.append(value)

    @property
    def last(self) -> T | None:
        """The latest value recorded, or None before any."""
        return self._values[-1] if self._values else None

    def at(self, block: int) -> T | None:
        """Return the value in the state after ``block`` (after every change in it), or None before the first."""
        index = bisect_right(self._blocks, block)
        return self._values[index - 1] if index else None
