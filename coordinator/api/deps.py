"""Reusable dependencies of the routes: the services, a database session, who is signed in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from contracts.enums import Role
from coordinator.api.problems import Problem
from coordinator.chain_index import ChainIndex
from coordinator.core.security import ActiveSession, RateLimiter, RoleCache
from coordinator.service import Services

SESSION_COOKIE = "metai_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_services(request: Request) -> Services:
    """The services the app was built with (async: a sync dependency would cost a worker-thread hop per request)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_db(services: ServicesDep) -> Iterator[Session]:
    """A database session for the request, committed if the handler returns normally."""
    with services.db.session() as session:
        yield session


# scope="function": the session commits before the response leaves, so an answer (202 for a
# signed consent, 201 for a sign-in nonce) is only ever sent for what is already stored; the
# default would commit after the client has the answer and may have acted on it.
DbDep = Annotated[Session, Depends(get_db, scope="function")]


@dataclass
class SignedIn:
    """The account a request acts for; its roles on chain are asked for only when a route needs them."""

    address: str
    session: ActiveSession
    token: str
    by_cookie: bool
    _role_cache: RoleCache

    @cached_property
    def roles(self) -> frozenset[Role]:
        """The roles the account holds on chain (as of at most the role cache's lifetime ago)."""
        return self._role_cache.roles(self.address)

    def is_role_cached(self) -> bool:
        """Whether :attr:`roles` can be answered without asking the chain."""
        return "roles" in self.__dict__ or self._role_cache.known(self.address)

    def has(self, role: Role) -> bool:
        """Whether the account holds ``role`` on chain."""
        return role in self.roles


def _token(request: Request) -> tuple[str, bool] | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Problem(401, "bad-authorization", "Malformed Authorization header",
                          "send 'Authorization: Bearer <token>' with the token sign-in returned",
                          headers={"WWW-Authenticate": "Bearer"})
        return value.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else None


async def _session_of(services: Services, token: str) -> ActiveSession | None:
    """The session of ``token``: from the cache, else from the database (lookups arriving together share a query)."""
    session = services.sessions.get(token)
    if session is not None:
        return session
    session = await services.session_lookups.get(token)
    if session is not None:
        services.sessions.put(token, session)
    return session


async def signed_in(request: Request, services: ServicesDep) -> SignedIn:
    """The signed-in account; refuse requests without a live session, and cookie writes without the CSRF token.

    A session seen in the last few seconds is taken from the service's cache; otherwise the
    database is asked (in a worker thread, so the event loop never waits on it).
    """
    found = _token(request)
    if found is None:
        raise Problem(401, "not-signed-in", "Not signed in",
                      "sign in first (POST /v1/auth/challenge, then POST /v1/auth/sign-in)",
                      headers={"WWW-Authenticate": "Bearer"})
    token, by_cookie = found
    session = await _session_of(services, token)
    if session is None:
        raise Problem(401, "session-expired", "Session expired or unknown",
                      "the session ended, expired or never existed; sign in again",
                      headers={"WWW-Authenticate": "Bearer"})
    if by_cookie and request.method not in _SAFE_METHODS and not session.csrf_matches(request.headers.get(CSRF_HEADER)):
        raise Problem(403, "csrf", "Missing or wrong CSRF token",
                      f"a request made with the session cookie must carry the session's {CSRF_HEADER} header")
    return SignedIn(session.address, session, token, by_cookie, services.roles)


SignedInDep = Annotated[SignedIn, Depends(signed_in)]


async def fresh_index(services: ServicesDep) -> ChainIndex:
    """The chain index, read up to the chain if it is older than the allowed lag.

    With a lag of 0 every request waits for the read. Otherwise, while requests keep the index
    fresh, one read runs in a worker thread and requests go on with the index as it is (a read of
    the chain can take a while when the node is busy, and every request would wait for it). An
    answer never comes from a read that began more than twice the lag ago: a request that finds
    the index older than that (the first request of all, the first after a quiet spell, or one
    during a read slower than the lag) waits for a read.
    """
    index = services.index
    if index.fresh():
        return index
    if index.age() >= 2 * index.max_lag:  # with a lag of 0, always
        async with services.index_lock:
            if index.age() >= 2 * index.max_lag:  # a request before this one may have read meanwhile
                # forced: a read another thread has under way may have begun before this request came
                await run_in_threadpool(lambda: index.sync(force=True))
    elif not services.index_lock.locked():
        async def refresh() -> None:
            async with services.index_lock:
                if not index.fresh():
                    await run_in_threadpool(index.sync)

        task = asyncio.create_task(refresh())
        services.background.add(task)  # kept until done: the loop holds only weak references to tasks
        task.add_done_callback(services.background.discard)
    return index


IndexDep = Annotated[ChainIndex, Depends(fresh_index)]


async def cookie_account(request: Request, services: ServicesDep) -> SignedIn | None:
    """The account the session cookie signs in, or None: the portal's pages send people to sign in instead
    of refusing them. Pages only read, so no CSRF token is asked for."""
    token = request.cookies.get(SESSION_COOKIE)
    if token is None:
        return None
    session = await _session_of(services, token)
    if session is None:
        return None
    return SignedIn(session.address, session, token, True, services.roles)


CookieAccountDep = Annotated[SignedIn | None, Depends(cookie_account)]


def client_key(request: Request) -> str:
    """The key rate limits count a client under: its address as the service sees it."""
    return request.client.host if request.client else "unknown"


def within_limit(limiter: RateLimiter, key: str, title: str) -> None:
    """Refuse (429, with Retry-After) a request that would take ``key`` over ``limiter``'s rate."""
    wait = limiter.allow(key)
    if wait is not None:
        per = "minute" if limiter.window == 60 else f"{limiter.window:g} s"
        raise Problem(429, "rate-limited", title, f"at most {limiter.limit} per {per}; try again in {wait:.0f} s",
                      headers={"Retry-After": str(max(1, round(wait)))})


def require_hospital(account: SignedIn) -> None:
    """Refuse (403) an account that does not hold the HOSPITAL role: only hospitals publish cohort proofs."""
    if not account.has(Role.HOSPITAL):
        raise Problem(403, "role-required", "Only a hospital publishes cohort proofs",
                      f"{account.address} does not hold the HOSPITAL role on chain")
