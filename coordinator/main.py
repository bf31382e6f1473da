"""Build the coordinator's FastAPI app: the ``/v1`` API, the portal's pages, problem details, middleware, the relay's
lifetime."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles

from coordinator.api.middleware import Guard, content_security_policy
from coordinator.api.problems import install_handlers
from coordinator.api.routes import (
    auth,
    catalogue,
    consents,
    health,
    me,
    portal,
    proofs,
    runs,
    sealed,
    studies,
    supernodes,
)
from coordinator.service import Services

API_VERSION = "v1"
STATIC = Path(__file__).parent / "portal" / "static"


def create_app(services: Services, *, run_relay: bool = True) -> FastAPI:
    """The service's app over ``services``; with ``run_relay`` the consent relay runs while the app does."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if run_relay:
            services.start_relay()
        try:
            yield
        finally:
            services.stop_relay()

    app = FastAPI(
        title="MeTAI exchange coordinator",
        version="1.0.0",
        summary="Patients' consent relay, studies and receipts of the MeTAI exchange",
        lifespan=lifespan,
        openapi_url=f"/{API_VERSION}/openapi.json",
        docs_url=f"/{API_VERSION}/docs",
        redoc_url=None,
    )
    app.state.services = services
    install_handlers(app)
    api = APIRouter(prefix=f"/{API_VERSION}")
    for module in (health, auth, catalogue, consents, me, proofs, sealed, studies, runs, supernodes):
        api.include_router(module.router)
    app.include_router(api)
    app.include_router(portal.router)  # the pages, at /
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    rpc = services.settings.public_rpc_url or ""  # the browser's JSON-RPC calls go there
    parts = urlsplit(rpc)
    connect = [f"{parts.scheme}://{parts.netloc}"] if parts.netloc else []
    app.add_middleware(Guard, max_body=services.settings.max_body, csp=content_security_policy(connect),
                       hsts=services.settings.public_url.startswith("https://"))
    return app
