"""The service's in-process guards: rate limits, the session cache and the role cache, on a fake clock."""

from __future__ import annotations

import datetime as _dt

from contracts.enums import Role
from coordinator.core.security import ActiveSession, RateLimiter, RoleCache, SessionCache, digest
from coordinator.models.tables import utcnow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _session(minutes: int = 60) -> ActiveSession:
    return ActiveSession("0x" + "ab" * 20, digest("csrf"), utcnow() + _dt.timedelta(minutes=minutes))


def test_a_rate_limit_refuses_past_the_limit_and_says_when_to_retry() -> None:
    clock = Clock()
    limiter = RateLimiter(2, window=60, clock=clock)
    assert [limiter.allow("a"), limiter.allow("a")] == [None, None]
    assert limiter.allow("a") == 60
    assert limiter.allow("b") is None  # another client is counted apart
    clock.now += 60
    assert limiter.allow("a") is None


def test_a_cached_session_is_forgotten_after_its_ttl() -> None:
    clock = Clock()
    cache = SessionCache(ttl=5, clock=clock)
    cache.put("token", _session())
    assert cache.get("token") is not None
    clock.now += 5
    assert cache.get("token") is None


def test_a_cached_session_is_never_served_past_its_expiry() -> None:
    cache = SessionCache(ttl=3600, clock=Clock())
    cache.put("token", _session(minutes=-1))
    assert cache.get("token") is None


def test_a_dropped_session_is_gone_at_once() -> None:
    cache = SessionCache(ttl=3600, clock=Clock())
    cache.put("token", _session())
    cache.drop("token")
    assert cache.get("token") is None


def test_roles_are_asked_again_after_the_ttl() -> None:
    clock = Clock()
    held = {Role.RESEARCHER}
    asked: list[str] = []

    def has_role(role: Role, address: str) -> bool:
        asked.append(address)
        return role in held

    cache = RoleCache(has_role, ttl=10, clock=clock)
    assert cache.roles("0xA") == frozenset({Role.RESEARCHER})
    held.clear()
    assert cache.roles("0xA") == frozenset({Role.RESEARCHER})  # within the ttl: not asked again
    assert cache.known("0xA")
    clock.now += 10
    assert not cache.known("0xA")
    assert cache.roles("0xA") == frozenset()
    assert len(asked) == 2 * len(Role)


def test_an_answer_is_kept_for_its_ttl_and_no_longer() -> None:
    from coordinator.core.cache import ResponseCache

    clock = Clock()
    cache = ResponseCache(0.5, size=2, clock=clock)
    cache.put("a", b"[1]")
    assert cache.get("a") == b"[1]"
    clock.now += 0.5
    assert cache.get("a") is None


def test_the_least_recently_used_answer_goes_first_and_a_zero_ttl_keeps_nothing() -> None:
    from coordinator.core.cache import ResponseCache

    cache = ResponseCache(10, size=2, clock=Clock())
    for key in ("a", "b"):
        cache.put(key, key.encode())
    cache.get("a")
    cache.put("c", b"c")
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (b"a", None, b"c")
    off = ResponseCache(0)
    off.put("a", b"a")
    assert off.get("a") is None


def test_an_answer_past_its_ttl_is_given_once_more_while_one_rebuild_runs_and_then_replaced() -> None:
    import asyncio

    from coordinator.core.cache import ResponseCache

    clock = Clock()
    cache = ResponseCache(0.5, clock=clock)
    builds: list[int] = []
    release = asyncio.Event()

    async def build() -> bytes:
        builds.append(len(builds))
        if len(builds) > 1:
            await release.wait()  # the rebuild is slow: nobody may wait for it
        return f"[{len(builds)}]".encode()

    async def scenario() -> None:
        assert await cache.answer("k", build) == b"[1]"
        clock.now += 0.6  # past the ttl, within the grace
        stale = await asyncio.wait_for(asyncio.gather(*(cache.answer("k", build) for _ in range(5))), 5)
        assert stale == [b"[1]"] * 5
        assert len(builds) == 2
        release.set()
        for _ in range(5):
            await asyncio.sleep(0)
        assert cache.get("k") == b"[2]"
        clock.now += 1.0  # past twice the ttl: too old to give, so the asker waits for a build
        assert await cache.answer("k", build) == b"[3]"

    asyncio.run(scenario())


def test_concurrent_askers_share_one_build_even_when_the_first_goes_away() -> None:
    import asyncio

    from coordinator.core.cache import ResponseCache

    cache = ResponseCache(10, clock=Clock())
    started = asyncio.Event()
    release = asyncio.Event()
    builds = 0

    async def build() -> bytes:
        nonlocal builds
        builds += 1
        started.set()
        await release.wait()
        return b"[]"

    async def scenario() -> None:
        first = asyncio.ensure_future(cache.answer("k", build))
        await started.wait()
        others = [asyncio.ensure_future(cache.answer("k", build)) for _ in range(10)]
        await asyncio.sleep(0)
        first.cancel()  # the first asker's client disconnected
        release.set()
        assert await asyncio.wait_for(asyncio.gather(*others), 5) == [b"[]"] * 10
        assert builds == 1

    asyncio.run(scenario())


def test_with_a_zero_ttl_every_asker_gets_an_answer_built_after_it_asked() -> None:
    import asyncio

    from coordinator.core.cache import ResponseCache

    cache = ResponseCache(0)
    counter = 0

    async def build() -> bytes:
        nonlocal counter
        counter += 1
        value = counter
        await asyncio.sleep(0)
        return str(value).encode()

    async def scenario() -> list[bytes]:
        return list(await asyncio.gather(*(cache.answer("k", build) for _ in range(3))))

    assert sorted(asyncio.run(scenario())) == [b"1", b"2", b"3"]


def test_lookups_asked_together_share_one_fetch_and_each_gets_its_own_answer() -> None:
    import asyncio
    import threading

    from coordinator.core.cache import Batched

    calls: list[list[str]] = []
    release = threading.Event()

    def fetch(keys: list[str]) -> dict[str, int]:
        calls.append(keys)
        release.wait(5)
        return {k: len(k) for k in keys if k != "unknown"}

    batched: Batched[str, int] = Batched(fetch)

    async def scenario() -> list[int | None]:
        first = asyncio.ensure_future(batched.get("a"))
        await asyncio.sleep(0.05)  # the first fetch is under way: what comes now waits for the next
        rest = [asyncio.ensure_future(batched.get(k)) for k in ("bb", "ccc", "bb", "unknown")]
        await asyncio.sleep(0)
        release.set()
        return [await first, *await asyncio.gather(*rest)]

    assert asyncio.run(scenario()) == [1, 2, 3, 2, None]
    assert calls == [["a"], ["bb", "ccc", "unknown"]]


def test_a_failed_fetch_reaches_every_asker_and_the_next_fetch_runs() -> None:
    import asyncio

    from coordinator.core.cache import Batched

    failing = [True]

    def fetch(keys: list[str]) -> dict[str, str]:
        if failing[0]:
            raise OSError("the database went away")
        return {k: k.upper() for k in keys}

    batched: Batched[str, str] = Batched(fetch)

    async def scenario() -> str | None:
        asked = await asyncio.gather(*(batched.get(k) for k in ("x", "y")), return_exceptions=True)
        assert all(isinstance(a, OSError) for a in asked)
        failing[0] = False
        return await batched.get("x")

    assert asyncio.run(scenario()) == "X"
