"""Errors the store raises. The API maps NotFound to 404, the conflicts to 409, a used-up quota to 429
(413 for bytes)."""

from __future__ import annotations

from typing import Any

from tuneyard.errors import ErrorType, TuneyardError, UserError


class NotFound(UserError):
    """No such object in this organization."""

    def __init__(self, kind: str, object_id: str) -> None:
        super().__init__(f"{kind} {object_id} not found", kind=kind, id=object_id)


class Conflict(UserError):
    """The request conflicts with the current state of the object."""


class InvalidTransition(Conflict):
    """The job cannot make this change from its current status."""

    def __init__(self, job_id: str, current: str, requested: str, **details: Any) -> None:
        self.current = current
        self.requested = requested
        super().__init__(
            f"job {job_id} is {current}; it cannot become {requested}",
            job_id=job_id, current_status=current, requested_status=requested, **details,
        )


class IdempotencyConflict(Conflict):
    """This idempotency key was already used with a different request."""


class QuotaExceeded(UserError):
    """The organization has used up one of its quotas."""

    def __init__(self, quota: str, limit: int, used: int, message: str | None = None) -> None:
        self.quota = quota
        self.limit = limit
        super().__init__(message, quota=quota, limit=limit, used=used)


class StorageQuotaExceeded(QuotaExceeded):
    """The organization's files would take more bytes than its quota allows."""


class StaleAttempt(TuneyardError):
    """This attempt no longer holds the job; the worker must stop writing to it."""

    error_type = ErrorType.PLATFORM_ERROR

    def __init__(self, job_id: str, attempt: int, current_attempt: int, status: str) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.current_attempt = current_attempt
        self.status = status
        super().__init__(
            f"job {job_id}: attempt {attempt} no longer holds it "
            f"(current attempt {current_attempt}, status {status})",
            job_id=job_id, attempt=attempt, current_attempt=current_attempt, status=status,
        )
