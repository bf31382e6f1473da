"""Sign-In with Ethereum (EIP-4361): a message to sign, a session for the signature, sign-out."""

from __future__ import annotations

import datetime as _dt
import re

from fastapi import APIRouter, Request, Response

from coordinator.api.deps import SESSION_COOKIE, DbDep, ServicesDep, SignedInDep, client_key, within_limit
from coordinator.api.problems import PROBLEM_RESPONSES, Problem
from coordinator.core import siwe
from coordinator.core.security import end_session, open_session, store_nonce, use_nonce
from coordinator.errors import SiweError
from coordinator.models.auth import ChallengeCreate, ChallengePublic, MePublic, SessionPublic, SignInCreate

router = APIRouter(prefix="/auth", tags=["sign-in"], responses=PROBLEM_RESPONSES)
STATEMENT = "Sign in to the MeTAI exchange. This signature proves you hold this account; it costs nothing."


def _kebab(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _limit(services: ServicesDep, request: Request) -> None:
    within_limit(services.sign_in_limit, client_key(request), "Too many sign-in attempts")


@router.post("/challenge", status_code=201)
def challenge(body: ChallengeCreate, request: Request, services: ServicesDep, db: DbDep) -> ChallengePublic:
    """Issue a sign-in message for ``address`` to sign with personal_sign; it is good once, for a few minutes."""
    _limit(services, request)
    nonce = siwe.new_nonce()
    expires = store_nonce(db, nonce, services.settings.sign_in_ttl)
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    message = siwe.SiweMessage(
        domain=services.settings.domain, address=body.address, statement=STATEMENT,
        uri=services.settings.public_url, version="1", chain_id=services.exchange.chain.chain_id,
        nonce=nonce, issued_at=now, expiration_time=expires.replace(tzinfo=_dt.UTC, microsecond=0),
    )
    return ChallengePublic(message=message.to_text(), nonce=nonce, expires_at=expires)


@router.post("/sign-in", status_code=201)
def sign_in(body: SignInCreate, request: Request, response: Response, services: ServicesDep,
            db: DbDep) -> SessionPublic:
    """Check a signed sign-in message and open a session: a cookie for the portal, a token for scripts."""
    _limit(services, request)
    settings = services.settings
    try:
        message = siwe.verify_sign_in(body.message, body.signature, domain=settings.domain, uri=settings.public_url,
                                      chain_id=services.exchange.chain.chain_id,
                                      now=_dt.datetime.now(_dt.UTC))
    except SiweError as exc:
        raise Problem(401, "sign-in-" + _kebab(type(exc).__name__.removeprefix("Siwe")),
                      "The sign-in message is not accepted", str(exc)) from None
    # Asked of the chain before the database is touched: nothing waits on the chain while holding a write.
    roles = sorted(r.name for r in services.roles.roles(message.address))
    if not use_nonce(db, message.nonce):
        raise Problem(401, "sign-in-replayed", "The sign-in message is not accepted",
                      "its nonce was not issued here, was already used, or has expired; ask for a new message")
    session = open_session(db, message.address, settings.session_ttl)
    response.set_cookie(SESSION_COOKIE, session.token, max_age=settings.session_ttl, httponly=True,
                        secure=settings.public_url.startswith("https://"), samesite="strict", path="/")
    return SessionPublic(address=session.address, roles=roles, token=session.token, csrf_token=session.csrf_token,
                         expires_at=session.expires_at)


@router.post("/sign-out", status_code=204)
def sign_out(account: SignedInDep, response: Response, services: ServicesDep, db: DbDep) -> None:
    """End this session."""
    end_session(db, account.token)
    services.sessions.drop(account.token)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.get("/me")
def me(account: SignedInDep) -> MePublic:
    """The signed-in account, its roles on chain and when the session ends."""
    return MePublic(address=account.address, roles=sorted(r.name for r in account.roles),
                    expires_at=account.session.expires_at)
