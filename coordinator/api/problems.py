"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns has a ``type`` (a URN naming the kind of problem, stable for
scripts to branch on), a ``title``, the HTTP ``status``, a ``detail`` for people and, where a
transaction or a call reverted on chain, the contract's custom ``error`` name and its
``values``. Routes and dependencies raise :class:`Problem`; the handlers installed by
:func:`install_handlers` also turn validation errors, unreachable chains and stray exceptions
into problems, so nothing leaves as HTML or a bare string.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.errors import ChainUnavailable, ConnectionFailed, ContractRevert

MEDIA_TYPE = "application/problem+json"
_log = logging.getLogger("metai.coordinator.api")


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: what went wrong, for scripts (``type``, ``error``) and people (``detail``)."""

    type: str = Field(description="URN of the kind of problem, e.g. urn:metai:problem:sign-in-expired")
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What happened in this case, and how to fix it")
    instance: str | None = Field(default=None, description="The request path")
    error: str | None = Field(default=None, description="The contract's custom error name, when the chain refused")
    values: dict[str, Any] | None = Field(default=None, description="The custom error's arguments")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Each invalid field of a request")
    study_status: str | None = Field(default=None, description="The study's status, when it is why a request failed")
    pending: list[str] | None = Field(default=None, description="Named hospitals that have not decided yet")
    run_id: str | None = Field(default=None, description="The Flower run a refusal is about, in decimal")


class Problem(Exception):
    """An error response: raise it in a route or dependency."""

    def __init__(self, status: int, slug: str, title: str, detail: str, *,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


def problem_response(request: Request, status: int, slug: str, title: str, detail: str,
                     headers: dict[str, str] | None = None, **extensions: Any) -> JSONResponse:
    """The ``application/problem+json`` response for one problem."""
    body = ProblemDetails(type=f"urn:metai:problem:{slug}", title=title, status=status, detail=detail,
                          instance=request.url.path, **extensions)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status,
                        media_type=MEDIA_TYPE, headers=headers)


def revert_problem(exc: ContractRevert, *, status: int = 409) -> Problem:
    """The problem for a call the chain refused, carrying the custom error's name and values."""
    values = {k: v.hex() if isinstance(v, bytes) else v for k, v in exc.values.items()}
    values = {k: str(v) if isinstance(v, int) and abs(v) >= 2**53 else v for k, v in values.items()}
    return Problem(status, "chain-refused", "The chain refused the call", str(exc), error=exc.error, values=values)


#: The response documented on every route for its errors.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": ProblemDetails, "content": {MEDIA_TYPE: {}}, "description": "The request cannot be served"},
    "5XX": {"model": ProblemDetails, "content": {MEDIA_TYPE: {}}, "description": "The service or the chain failed"},
}


def install_handlers(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem document."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.slug, exc.title, exc.detail, exc.headers, **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors[:5])
        return problem_response(request, 422, "invalid-request", "The request is invalid", where, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return problem_response(request, exc.status_code, slug, str(exc.detail), str(exc.detail),
                                dict(exc.headers) if exc.headers else None)

    @app.exception_handler(ContractRevert)
    async def _revert(request: Request, exc: ContractRevert) -> JSONResponse:
        problem = revert_problem(exc)
        return problem_response(request, problem.status, problem.slug, problem.title, problem.detail,
                                **problem.extensions)

    @app.exception_handler(ConnectionFailed)
    async def _chain_down(request: Request, exc: ConnectionFailed) -> JSONResponse:
        _log.warning("chain unreachable", extra={"detail": str(exc)})
        slug = "chain-unavailable" if isinstance(exc, ChainUnavailable) else "chain-error"
        return problem_response(request, 503, slug, "The chain cannot be reached", str(exc), {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, 500, "internal-error", "Internal error",
                                "the service failed on this request; the operator's log has the details")
