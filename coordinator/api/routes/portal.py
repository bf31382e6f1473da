"""The web portal's pages (server-rendered; their script is the bundle in coordinator/portal/static).

Pages read with the session cookie and send people without a session to the sign-in page.
What a page shows comes from the same functions as the ``/v1`` API, so a page never shows
what the API would refuse; everything a page changes goes through the API from its script.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from contracts.enums import Role
from coordinator.api.deps import CookieAccountDep, DbDep, ServicesDep, SignedIn
from coordinator.api.problems import Problem
from coordinator.api.routes.consents import relay_items
from coordinator.api.routes.studies import visible_studies, visible_study
from coordinator.models.consents import kind_names
from coordinator.patients import consents_of
from coordinator.portal.chart import cohort_chart, metric_charts, short
from coordinator.proofs import data_uses
from coordinator.service import Services

router = APIRouter(include_in_schema=False)
PORTAL = Path(__file__).parents[2] / "portal"
templates = Jinja2Templates(directory=PORTAL / "templates")
templates.env.globals["short"] = short
templates.env.globals["kind_names"] = kind_names
#: Signed consents shown on the consents page (the API lists them all).
RECENT_RELAY = 10


def _page(request: Request, services: Services, account: SignedIn | None, template: str, page: str,
          status_code: int = 200, **values: Any) -> HTMLResponse:
    """Render ``template``; the body's data attributes tell the script where the chain and contracts are."""
    exchange = services.exchange
    context = {"page": page, "account": account,
               "roles": sorted(r.name for r in account.roles) if account else [],
               "rpc_url": services.settings.public_rpc_url or "", "chain_id": exchange.chain.chain_id,
               "consent_registry": exchange.consent.address, "study_registry": exchange.studies.address, **values}
    response = templates.TemplateResponse(request, template, context, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"  # pages hold one person's data
    return response


def _to_sign_in(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/sign-in?next={quote(target, safe='')}", status_code=303)


def _error(request: Request, services: Services, account: SignedIn, problem: Problem) -> HTMLResponse:
    return _page(request, services, account, "error.html", "error", status_code=problem.status, problem=problem)


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The site's icon, for browsers that ask for it by its old name (pages link /static/favicon.svg)."""
    return FileResponse(PORTAL / "static" / "favicon.svg", media_type="image/svg+xml")


@router.get("/")
def home(request: Request, account: CookieAccountDep) -> Response:
    """Where each person starts: a hospital at its approvals, a researcher at their studies, a patient at consents."""
    if account is None:
        return _to_sign_in(request)
    if account.has(Role.HOSPITAL):
        return RedirectResponse("/approvals", status_code=303)
    if account.has(Role.RESEARCHER):
        return RedirectResponse("/studies", status_code=303)
    return RedirectResponse("/consents", status_code=303)


def _safe_next(value: str | None) -> str:
    """A local path to go to after sign-in (never another site)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"


@router.get("/sign-in")
def sign_in_page(request: Request, services: ServicesDep, account: CookieAccountDep,
                 next: str | None = None) -> HTMLResponse:
    """Sign in with a browser wallet or with a key kept (encrypted) in this browser."""
    return _page(request, services, account, "sign_in.html", "sign-in", next=_safe_next(next))


@router.get("/consents")
def consents_page(request: Request, services: ServicesDep, account: CookieAccountDep, db: DbDep) -> Response:
    """My consents in plain words, a form to grant one, revoking, and cancelling outstanding signatures."""
    if account is None:
        return _to_sign_in(request)
    return _page(request, services, account, "consents.html", "consents",
                 consents=consents_of(services.index, account.address),
                 relayed=relay_items(account, db)[:RECENT_RELAY])


@router.get("/data-uses")
def data_uses_page(request: Request, services: ServicesDep, account: CookieAccountDep, db: DbDep) -> Response:
    """Who used my data: each study round at each hospital, with each proof to check on chain from the browser.

    In sealed mode the page holds no proof: its script finds and opens the patient's envelopes."""
    if account is None:
        return _to_sign_in(request)
    return _page(request, services, account, "data_uses.html", "data-uses",
                 uses=data_uses(db, services.index, account.address), proof_mode=services.settings.proof_mode)


@router.get("/studies")
def studies_page(request: Request, services: ServicesDep, account: CookieAccountDep) -> Response:
    """The studies I have a part in."""
    if account is None:
        return _to_sign_in(request)
    studies = visible_studies(services.index, account)
    return _page(request, services, account, "studies.html", "studies", studies=studies)


def _study(request: Request, services: Services, account: SignedIn | None, study_id: int, template: str) -> Response:
    """A study rendered with ``template``: the whole page, or its rounds alone."""
    if account is None:
        return _to_sign_in(request)
    try:
        study = visible_study(services, account, study_id)
    except Problem as problem:
        return _error(request, services, account, problem)
    return _page(request, services, account, template, "study", study=study,
                 cohorts=cohort_chart(study), metrics=metric_charts(study))


@router.get("/studies/{study_id}")
def study_page(study_id: int, request: Request, services: ServicesDep, account: CookieAccountDep) -> Response:
    """A study: its decisions, a chart per round (cohorts, held-out metrics), live updates, the model."""
    return _study(request, services, account, study_id, "study.html")


@router.get("/studies/{study_id}/rounds")
def study_rounds(study_id: int, request: Request, services: ServicesDep, account: CookieAccountDep) -> Response:
    """The study page's rounds (charts and table) alone: the page fetches it again when the study changes."""
    return _study(request, services, account, study_id, "_rounds.html")


@router.get("/approvals")
def approvals_page(request: Request, services: ServicesDep, account: CookieAccountDep) -> Response:
    """Studies naming me (a hospital) whose decision is still mine to make."""
    if account is None:
        return _to_sign_in(request)
    waiting = []
    if account.has(Role.HOSPITAL):
        for listed in visible_studies(services.index, account):
            if "named hospital" in listed.my_part and listed.status == "requested":
                study = visible_study(services, account, listed.study_id)
                if any(d.hospital == account.address and d.decision == "pending" for d in study.decisions):
                    waiting.append(study)
    return _page(request, services, account, "approvals.html", "approvals", waiting=waiting)
