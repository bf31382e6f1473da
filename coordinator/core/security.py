"""Sessions, CSRF tokens, rate limits and the roles an address holds on chain.

A session is one random token, given to the portal as an HTTP-only cookie and to scripts as a
bearer token; the database keeps only its SHA-256, so a copy of the database signs nobody in.
A cookie session also gets a CSRF token (kept as a SHA-256 too) that every state-changing
request must echo in the ``X-CSRF-Token`` header: a page on another site can make the browser
send the cookie, not read the token. Bearer tokens need no CSRF token, since browsers never
attach them by themselves.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from contracts.enums import Role
from coordinator.models.tables import SignInNonce, SignInSession, utcnow


def digest(token: str) -> str:
    """The SHA-256 (hex) under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class NewSession:
    """A session just made: the token and CSRF token are shown once and stored only as hashes."""

    token: str
    csrf_token: str
    address: str
    expires_at: _dt.datetime


@dataclass(frozen=True)
class ActiveSession:
    """A session found by its token."""

    address: str
    csrf_sha256: str
    expires_at: _dt.datetime

    def csrf_matches(self, presented: str | None) -> bool:
        """Whether ``presented`` is this session's CSRF token (compared in constant time)."""
        return presented is not None and hmac.compare_digest(digest(presented), self.csrf_sha256)


def store_nonce(db: Session, nonce: str, ttl: int) -> _dt.datetime:
    """Remember a sign-in nonce until ``ttl`` seconds from now; return that expiry."""
    now = utcnow()
    expires = now + _dt.timedelta(seconds=ttl)
    db.add(SignInNonce(nonce=nonce, issued_at=now, expires_at=expires))
    return expires


def use_nonce(db: Session, nonce: str) -> bool:
    """Mark ``nonce`` used if it was issued, is unexpired and unused; whether it was (one winner only)."""
    now = utcnow()
    result = db.execute(
        update(SignInNonce)
        .where(SignInNonce.nonce == nonce, SignInNonce.used_at.is_(None), SignInNonce.expires_at > now)
        .values(used_at=now)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def open_session(db: Session, address: str, ttl: int) -> NewSession:
    """Start a session for ``address`` lasting ``ttl`` seconds."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    expires = now + _dt.timedelta(seconds=ttl)
    db.add(SignInSession(token_sha256=digest(token), csrf_sha256=digest(csrf), address=address,
                         created_at=now, expires_at=expires))
    return NewSession(token, csrf, address, expires)


def find_sessions(db: Session | Connection, tokens: list[str]) -> dict[str, ActiveSession]:
    """The unexpired, unended sessions among ``tokens``, by token (one query)."""
    by_hash = {digest(token): token for token in tokens}
    rows = db.execute(
        select(SignInSession.token_sha256, SignInSession.address, SignInSession.csrf_sha256, SignInSession.expires_at)
        .where(SignInSession.token_sha256.in_(list(by_hash)), SignInSession.ended_at.is_(None),
               SignInSession.expires_at > utcnow()))
    return {by_hash[row.token_sha256]: ActiveSession(row.address, row.csrf_sha256, row.expires_at) for row in rows}


def end_session(db: Session, token: str) -> None:
    """End the session of ``token`` (signing out)."""
    db.execute(update(SignInSession).where(SignInSession.token_sha256 == digest(token)).values(ended_at=utcnow()))


class SessionCache:
    """Sessions found recently, by token hash, for at most ``ttl`` seconds (and never past their expiry).

    Reads are most of the service's requests; this spares each a database query. A session ended
    by sign-out is dropped from the cache of the process that served the sign-out at once; other
    service processes (if several serve the same database) stop accepting it within ``ttl``.
    """

    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[float, ActiveSession]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> ActiveSession | None:
        """The cached live session of ``token``, if any."""
        key = digest(token)
        with self._lock:
            hit = self._known.get(key)
        if hit is None:
            return None
        until, session = hit
        if self._clock() >= until or session.expires_at <= utcnow():
            with self._lock:
                self._known.pop(key, None)
            return None
        return session

    def put(self, token: str, session: ActiveSession) -> None:
        """Remember ``session`` for ``token``."""
        with self._lock:
            if len(self._known) > 100_000:
                self._known.clear()  # a bound, not a policy: the database still answers
            self._known[digest(token)] = (self._clock() + self.ttl, session)

    def drop(self, token: str) -> None:
        """Forget ``token`` (its session ended)."""
        with self._lock:
            self._known.pop(digest(token), None)


class RateLimiter:
    """At most ``limit`` events per key in any ``window`` seconds (a sliding log, per process).

    Each service process counts on its own; behind several processes the limit is per process.
    """

    def __init__(self, limit: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> float | None:
        """Count one event for ``key``; None if allowed, else the seconds until one would be."""
        now = self._clock()
        with self._lock:
            log = self._events.setdefault(key, deque())
            while log and log[0] <= now - self.window:
                log.popleft()
            if len(log) >= self.limit:
                return max(0.0, log[0] + self.window - now)
            log.append(now)
            if len(self._events) > 100_000:  # forget idle keys rather than grow without bound
                for idle in [k for k, v in self._events.items() if not v]:
                    del self._events[idle]
            return None


class RoleCache:
    """The roles an address holds on chain, asked at most once per ``ttl`` seconds per address.

    A role the admin grants or revokes shows within ``ttl`` seconds; the chain itself refuses any
    transaction from an account without the role at that moment whatever this cache says.
    """

    def __init__(self, has_role: Callable[[Role, str], bool], ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._has_role = has_role
        self._ttl = ttl
        self._clock = clock
        self._known: dict[str, tuple[float, frozenset[Role]]] = {}
        self._lock = threading.Lock()

    def known(self, address: str) -> bool:
        """Whether ``address``'s roles were asked less than ``ttl`` seconds ago."""
        with self._lock:
            hit = self._known.get(address)
        return hit is not None and self._clock() - hit[0] < self._ttl

    def roles(self, address: str) -> frozenset[Role]:
        """The roles ``address`` holds (as of at most ``ttl`` seconds ago)."""
        now = self._clock()
        with self._lock:
            hit = self._known.get(address)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        held = frozenset(role for role in Role if self._has_role(role, address))
        with self._lock:
            self._known[address] = (now, held)
        return held
