"""Errors -> HTTP, in exactly one place.

Handlers raise ``ApiError(status, text)``; Sanic's own 404/405/413 and every
other exception land in ``error_response`` too. Store failures (Redis
unreachable, a timeout, a node loading or down) become 503 with a plain-text
reason; anything else is a 500 logged with its traceback. Every error body is
one line of plain text.
"""

from __future__ import annotations

import logging

from sanic import HTTPResponse, Request, text
from sanic.exceptions import SanicException

from tidemq.store.errors import store_unavailable

__all__ = ["ApiError", "error_response", "store_unavailable"]

log = logging.getLogger("tidemq.api")

class ApiError(Exception):
    """A response decided by the API: ``status`` and a one-line plain-text ``message``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def error_response(request: Request, exc: BaseException) -> HTTPResponse:
    """The plain-text response for any exception raised while serving ``request``."""
    if isinstance(exc, ApiError):
        return text(exc.message, status=exc.status)
    if isinstance(exc, SanicException):
        status = int(getattr(exc, "status_code", 500) or 500)
        if status == 404:
            return text(f"not found: {request.path}", status=404)
        if status == 405:
            resp = text(f"method {request.method} not allowed on {request.path}", status=405)
            allowed = getattr(exc, "allowed_methods", None) or (exc.headers or {}).get("Allow")
            if allowed:
                resp.headers["Allow"] = allowed if isinstance(allowed, str) else ", ".join(sorted(allowed))
            return resp
        if status == 413:
            return text("body larger than the maximum payload", status=413)
        if status < 500:
            return text(_one_line(exc) or "bad request", status=status)
    reason = store_unavailable(exc)
    if reason is not None:
        log.warning("%s %s: %s", request.method, request.path, reason)
        return text(reason, status=503)
    log.exception("%s %s failed", request.method, request.path, exc_info=exc)
    return text("internal error", status=500)
