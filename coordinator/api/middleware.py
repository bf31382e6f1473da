"""ASGI middleware of the service: request size limit, security headers, one log line per request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coordinator.api.problems import MEDIA_TYPE

_log = logging.getLogger("metai.coordinator.access")


def content_security_policy(connect: list[str]) -> str:
    """The portal's policy: its own scripts, styles and images only; JSON-RPC only to ``connect``."""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src " + " ".join(["'self'", *connect]),
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


class _TooLarge(Exception):
    pass


class Guard:
    """Refuse bodies over ``max_body`` bytes (413), add security headers, log each request."""

    def __init__(self, app: ASGIApp, *, max_body: int, csp: str, hsts: bool) -> None:
        self.app = app
        self.max_body = max_body
        self.headers = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        if hsts:
            self.headers.append((b"strict-transport-security", b"max-age=31536000"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 0}
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(scope, send, status)
            self._log(scope, status["code"], started)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = list(message.get("headers", [])) + self.headers
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except _TooLarge:
            if status["code"] == 0:
                await self._refuse(scope, send, status)
        self._log(scope, status["code"], started)

    async def _refuse(self, scope: Scope, send: Send, status: dict[str, int]) -> None:
        body = json.dumps({
            "type": "urn:metai:problem:request-too-large", "title": "Request body too large", "status": 413,
            "detail": f"the body exceeds {self.max_body} bytes", "instance": scope.get("path", ""),
        }).encode()
        status["code"] = 413
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode()),
                                *self.headers]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _log(scope: Scope, code: int, started: float) -> None:
        extra: dict[str, Any] = {"method": scope.get("method"), "path": scope.get("path"), "status": code,
                                 "ms": round((time.perf_counter() - started) * 1000, 2)}
        _log.info("%s %s %d", extra["method"], extra["path"], code, extra=extra)
