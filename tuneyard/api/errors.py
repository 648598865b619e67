"""The one place errors become HTTP: each failure's status, code, message and details.

Every failure the API can produce goes through here (typed errors from the services and the store,
request validation, malformed JSON, unknown routes, wrong methods, oversized bodies) and becomes an
ApiError; the dialect that owns the request's path renders it (tuneyard.api.dialects), so each API
answers in its own shape while the mapping stays one table. The native shape is the envelope
{"error": {code, message, details}}, also used for paths no dialect owns (the console, /healthz).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from tuneyard.errors import TuneyardError, UserError
from tuneyard.services.errors import (
    Forbidden,
    ModelProcessDied,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    ServingUnavailable,
    TrainingFailed,
    Unauthorized,
)
from tuneyard.store.errors import Conflict, NotFound, QuotaExceeded, StorageQuotaExceeded

log = logging.getLogger(__name__)

INVALID_REQUEST = "INVALID_REQUEST"
UNAUTHORIZED = "UNAUTHORIZED"
FORBIDDEN = "FORBIDDEN"  # a valid key without the role the route needs (a member key on an admin route)
NOT_FOUND = "NOT_FOUND"
CONFLICT = "CONFLICT"
RATE_LIMITED = "RATE_LIMITED"
TRAINING_FAILED = "TRAINING_FAILED"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
MODEL_PROCESS_DIED = "MODEL_PROCESS_DIED"  # a served model's process died mid-answer; it restarts, retry
INTERNAL_ERROR = "INTERNAL_ERROR"

# First match wins, so subclasses come before their bases.
ERROR_STATUS: tuple[tuple[type[TuneyardError], int, str], ...] = (
    (Unauthorized, 401, UNAUTHORIZED),
    (Forbidden, 403, FORBIDDEN),
    (NotFound, 404, NOT_FOUND),
    (TrainingFailed, 409, TRAINING_FAILED),
    (Conflict, 409, CONFLICT),
    (RateLimited, 429, RATE_LIMITED),
    (StorageQuotaExceeded, 413, INVALID_REQUEST),  # its details name the quota and its limit
    (QuotaExceeded, 429, RATE_LIMITED),
    (PayloadTooLarge, 413, INVALID_REQUEST),
    (UserError, 422, INVALID_REQUEST),
    (ModelProcessDied, 503, MODEL_PROCESS_DIED),
    (ServiceUnavailable, 503, SERVICE_UNAVAILABLE),
    (TuneyardError, 500, INTERNAL_ERROR),
)

HTTP_CODES = {400: INVALID_REQUEST, 401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT, 429: RATE_LIMITED,
              503: SERVICE_UNAVAILABLE}


@dataclass(frozen=True)
class ApiError:
    """One failure, decided: what a dialect's renderer turns into a response."""

    status: int
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] | None = None


ErrorRenderer = Callable[[Request, ApiError], Response]
"""A dialect's shape for errors: the request (for its path) and the decided failure → a response."""


def envelope(status: int, code: str, message: str, details: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def render_envelope(_request: Request, error: ApiError) -> Response:
    """The native renderer: {"error": {code, message, details}} with the decided status."""
    return envelope(error.status, error.code, error.message, error.details, error.headers)


def status_for(exc: TuneyardError) -> tuple[int, str]:
    for cls, status, code in ERROR_STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, INTERNAL_ERROR


def rate_limit_headers(limit: int, remaining: int, reset_after_s: int) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset_after_s)}


def tuneyard_error(request: Request, exc: TuneyardError) -> ApiError:
    status, code = status_for(exc)
    if status >= 500 and not isinstance(exc, ServingUnavailable):  # serving's say what to do: retry
        log.error("%s %s failed: %s", request.method, request.url.path, exc, exc_info=exc)
        return ApiError(status, code, "internal error")
    headers = None
    if isinstance(exc, RateLimited):
        headers = {"Retry-After": str(exc.retry_after_s),
                   **rate_limit_headers(exc.limit, exc.remaining, exc.reset_after_s)}
    return ApiError(status, code, exc.message, exc.details, headers)


def validation_error(exc: RequestValidationError) -> ApiError:
    problems = [_problem(e) for e in exc.errors()]
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return ApiError(400, INVALID_REQUEST, "the body is not valid JSON", {"problems": problems})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return ApiError(422, INVALID_REQUEST, f"invalid request: {summary}", {"problems": problems})


def _problem(error: Any) -> dict[str, str]:
    # FastAPI prefixes locations with where the value came from: body, query, path, header.
    loc = [str(p) for p in error.get("loc", ())]
    field = ".".join(loc[1:] if loc and loc[0] == "body" and len(loc) > 1 else loc) or "(body)"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    return {"field": field, "message": message}


def http_error(request: Request, exc: StarletteHTTPException) -> ApiError:
    status = exc.status_code
    code = HTTP_CODES.get(status, INTERNAL_ERROR if status >= 500 else INVALID_REQUEST)
    messages = {404: f"no route {request.url.path}", 405: f"{request.method} is not allowed on {request.url.path}",
                413: "the request body is too large"}
    message = messages.get(status) or str(exc.detail)
    headers = dict(exc.headers) if exc.headers else {}
    allowed = allowed_methods(request) if status == 405 else None
    if allowed:
        headers["Allow"] = ", ".join(allowed)
    return ApiError(status, code, message, {}, headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on the request's path. Starlette's 405 names only the first
    route that matched the path, so `GET /v1/jobs` and `POST /v1/jobs` each claimed to be the only one.
    Asked of the routes as they match (FastAPI nests included routers), one method at a time."""
    routes = request.app.router.routes
    return [method for method in ROUTE_METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


ROUTE_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def decide(request: Request, exc: Exception) -> ApiError:
    """The failure an exception means, whatever raised it."""
    if isinstance(exc, TuneyardError):
        return tuneyard_error(request, exc)
    if isinstance(exc, RequestValidationError):
        return validation_error(exc)
    if isinstance(exc, StarletteHTTPException):
        return http_error(request, exc)
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return ApiError(500, INTERNAL_ERROR, "internal error")


def install_error_handlers(app: FastAPI, renderer_for: Callable[[str], ErrorRenderer] | None = None) -> None:
    """Send every failure through `decide`, then to the renderer `renderer_for(path)` names
    (the native envelope everywhere when none is given)."""
    pick = renderer_for or (lambda _path: render_envelope)

    async def handle(request: Request, exc: Exception) -> Response:
        return pick(request.url.path)(request, decide(request, exc))

    for kind in (TuneyardError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(kind, handle)
