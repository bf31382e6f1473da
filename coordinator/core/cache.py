"""Answers kept for a moment: the JSON of a read endpoint, by caller and question, for at most ``ttl`` seconds.

The read endpoints answer from the chain index, which may already be ``chain_lag`` seconds old;
keeping their serialized answers as long again spares re-building and re-validating the same
document for every one of many requests a second. With ``ttl`` 0 nothing is kept.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable


class ResponseCache:
    """At most ``size`` answers, each for at most ``ttl`` seconds (least recently used go first)."""

    def __init__(self, ttl: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._kept: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Hashable, asyncio.Lock] = {}

    async def answer(self, key: Hashable, build: Callable[[], Awaitable[bytes]]) -> bytes:
        """The answer kept under ``key``, or one ``build`` makes now; concurrent askers of one key wait for one build.

        Without the wait, every request arriving as an answer expires would build it again at once.
        """
        kept = self.get(key)
        if kept is not None:
            return kept
        lock = self._building.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                kept = self.get(key)
                if kept is None:
                    kept = self.put(key, await build())
        finally:
            if not lock.locked():
                self._building.pop(key, None)
        return kept

    def get(self, key: Hashable) -> bytes | None:
        """The answer kept under ``key``, if it is younger than ``ttl``."""
        if self.ttl <= 0:
            return None
        with self._lock:
            hit = self._kept.get(key)
            if hit is None:
                return None
            if self._clock() >= hit[0]:
                del self._kept[key]
                return None
            self._kept.move_to_end(key)
            return hit[1]

    def put(self, key: Hashable, body: bytes) -> bytes:
        """Keep ``body`` under ``key``; return it."""
        if self.ttl > 0:
            with self._lock:
                self._kept[key] = (self._clock() + self.ttl, body)
                self._kept.move_to_end(key)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return body
