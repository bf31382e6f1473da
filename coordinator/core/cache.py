"""Answers kept for a moment: the JSON of a read endpoint, by caller and question, for about ``ttl`` seconds.

The read endpoints answer from the chain index, which may already be ``chain_lag`` seconds old;
keeping their serialized answers as long again spares re-building and re-validating the same
document for every one of many requests a second. With ``ttl`` 0 nothing is kept.

An answer past its ``ttl`` is still given for one ``ttl`` more while a single rebuild runs in the
background: otherwise every request for it would wait for the rebuild, and under load that wait
(a rebuild competing for the interpreter with the requests in flight) is the slowest thing a
reader sees. An answer is therefore at most ``2 * ttl`` old, plus the time of one rebuild.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

_log = logging.getLogger("metai.coordinator.cache")
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[T]):
    """At most one run of a piece of work per key at a time; whoever asks while it runs gets its result.

    The work runs as a task of its own, so a caller that goes away (a client that disconnects)
    does not cancel it for the others; and they all wake at once when it ends, not one by one.
    """

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[T]] = {}

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        """The result of ``work()``, or of the run of it already under way for ``key``."""
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._running[key] = task
            task.add_done_callback(lambda _done: self._running.pop(key, None))
        return await asyncio.shield(task)

    def running(self, key: Hashable) -> bool:
        """Whether a run for ``key`` is under way."""
        return key in self._running


class Batched(Generic[K, V]):
    """Looks many keys up with one blocking call: keys asked for while a call runs go in the next one.

    ``fetch`` runs in a worker thread with every key waiting (at most ``most`` at a time) and
    returns what it found; a key it does not return is answered None. Under load this takes one
    thread hand-over and one query for many requests instead of one each.
    """

    def __init__(self, fetch: Callable[[list[K]], dict[K, V]], most: int = 500) -> None:
        self._fetch = fetch
        self._most = most
        self._waiting: dict[K, asyncio.Future[V | None]] = {}
        self._worker: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """What ``fetch`` finds for ``key`` (None if nothing)."""
        answer = self._waiting.get(key)
        if answer is None:
            answer = asyncio.get_running_loop().create_future()
            self._waiting[key] = answer
            if self._worker is None or self._worker.done():
                self._worker = asyncio.create_task(self._drain())
        return await asyncio.shield(answer)

    async def _drain(self) -> None:
        while self._waiting:
            keys = list(self._waiting)[:self._most]
            answers = [self._waiting.pop(key) for key in keys]
            try:
                found = await asyncio.to_thread(self._fetch, keys)
            except Exception as exc:  # each asker hears of it
                for answer in answers:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for key, answer in zip(keys, answers, strict=True):
                if not answer.done():
                    answer.set_result(found.get(key))


class ResponseCache:
    """At most ``size`` answers, each fresh for ``ttl`` seconds and given while rebuilt for ``ttl`` more."""

    def __init__(self, ttl: float, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._kept: OrderedDict[Hashable, tuple[float, bytes]] = OrderedDict()  # key -> (fresh until, body)
        self._lock = threading.Lock()
        self._building: SingleFlight[bytes] = SingleFlight()
        self._rebuilding: dict[Hashable, asyncio.Task[None]] = {}

    async def answer(self, key: Hashable, build: Callable[[], Awaitable[bytes]]) -> bytes:
        """The answer kept under ``key``, or one ``build`` makes now; concurrent askers of one key wait for one build.

        Without the wait, every request arriving as an answer expires would build it again at once.
        An answer in its second ``ttl`` is given at once, and one rebuild of it starts in the background.
        """
        if self.ttl <= 0:  # nothing kept: each asker gets an answer built after it asked
            return await build()
        kept, fresh = self._lookup(key)
        if kept is not None:
            if not fresh and key not in self._rebuilding:
                task = asyncio.create_task(self._rebuild(key, build))
                self._rebuilding[key] = task  # also the loop's only strong reference to the task
            return kept

        async def build_and_keep() -> bytes:
            return self.get(key) or self.put(key, await build())

        return await self._building.run(key, build_and_keep)

    async def _rebuild(self, key: Hashable, build: Callable[[], Awaitable[bytes]]) -> None:
        try:
            self.put(key, await build())
        except Exception:  # the next asker past the grace builds again, and sees the error itself
            _log.exception("rebuilding a kept answer failed")
        finally:
            self._rebuilding.pop(key, None)

    def _lookup(self, key: Hashable) -> tuple[bytes | None, bool]:
        """The answer under ``key`` if it is younger than ``2 * ttl``, and whether it is younger than ``ttl``."""
        if self.ttl <= 0:
            return None, False
        with self._lock:
            hit = self._kept.get(key)
            if hit is None:
                return None, False
            age_past_fresh = self._clock() - hit[0]
            if age_past_fresh >= self.ttl:
                del self._kept[key]
                return None, False
            self._kept.move_to_end(key)
            return hit[1], age_past_fresh < 0

    def get(self, key: Hashable) -> bytes | None:
        """The answer kept under ``key``, if it is younger than ``ttl``."""
        kept, fresh = self._lookup(key)
        return kept if fresh else None

    def put(self, key: Hashable, body: bytes) -> bytes:
        """Keep ``body`` under ``key``; return it."""
        if self.ttl > 0:
            with self._lock:
                self._kept[key] = (self._clock() + self.ttl, body)
                self._kept.move_to_end(key)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return body
