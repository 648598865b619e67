"""Errors the services raise on top of tuneyard.errors and tuneyard.store.errors.

Each maps to one HTTP status in tuneyard.api.errors; the services themselves know nothing of HTTP.
"""

from __future__ import annotations

from typing import Any

from tuneyard.errors import TuneyardError, UserError


class InvalidRequest(UserError):
    """The request is invalid."""

    def __init__(self, problems: list[dict[str, Any]], message: str | None = None) -> None:
        self.problems = problems
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        super().__init__(message or f"invalid request: {summary}", problems=problems)


class Unauthorized(UserError):
    """A valid API key is needed: send `Authorization: Bearer <key>`."""


class Forbidden(UserError):
    """This needs an admin key of the organization: member keys do jobs and data only."""


class PayloadTooLarge(UserError):
    """The request body is larger than this server accepts."""

    def __init__(self, limit_bytes: int, message: str | None = None) -> None:
        self.limit_bytes = limit_bytes
        super().__init__(message or f"the body is larger than the limit of {limit_bytes} bytes",
                         limit_bytes=limit_bytes)


class RateLimited(UserError):
    """Too many requests; retry later."""

    def __init__(self, limit: int, remaining: int, retry_after_s: int, reset_after_s: int) -> None:
        self.limit = limit
        self.remaining = remaining
        self.retry_after_s = retry_after_s
        self.reset_after_s = reset_after_s
        super().__init__(
            f"job creation is limited to {limit} a minute; retry in {retry_after_s} s",
            limit=limit, retry_after_s=retry_after_s,
        )


class TrainingFailed(UserError):
    """The job failed, so it has no result."""


class ServiceUnavailable(TuneyardError):
    """The service cannot answer right now; retry later."""


class ServingUnavailable(ServiceUnavailable):
    """The model cannot answer right now; retry later."""


class ModelProcessDied(ServingUnavailable):
    """The model's serving process died while answering; it is being restarted: retry."""


class ServingFailed(ServingUnavailable):
    """The serving backend failed to answer; retry later."""
