"""Shapes shared by every resource."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict


class Request(BaseModel):
    """Base of request bodies: unknown fields are an error, not silently dropped, and a value means
    what its JSON type says (strict: `"is_admin": 0` is refused, not read as false)."""

    model_config = ConfigDict(extra="forbid", strict=True)


T = TypeVar("T")


class ListOf(BaseModel, Generic[T]):
    """A list response; lists are newest first unless the route says otherwise."""

    object: str = "list"
    data: list[T]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorEnvelope, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("UNAUTHORIZED: no API key, or one that is unknown or revoked"),
    404: _error("NOT_FOUND: no such route, or nothing by that id in the key's organization"),
    408: _error("INVALID_REQUEST: the request body stopped arriving (body_read_timeout_seconds, "
                "body_total_timeout_seconds)"),
    409: _error("CONFLICT (or TRAINING_FAILED): the object's state does not allow it, or the name is taken"),
    413: _error("INVALID_REQUEST: the body is over its size limit, or an upload over the organization's byte quota"),
    422: _error("INVALID_REQUEST: the request does not validate; `details.problems` names every field at fault"),
    429: _error("RATE_LIMITED: the job rate limit, a count quota or the concurrent-upload cap; see Retry-After"),
}
"""What any route may answer: the body limits (408, 413) hold for every request, as do keys and lookups."""

NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not Modified: `If-None-Match` named the answer's current `ETag` (a weak one, "
                         "from the job's revision); no body", "content": {}},
}
"""A conditional read of a job (`api/conditional.py`): the 200 carries an `ETag` to send back."""

BODY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("INVALID_REQUEST: the body is not JSON (or not a multipart form) at all"),
}
"""Also answered by a route that reads a body; tests/integration/test_api_openapi.py holds each to it."""
