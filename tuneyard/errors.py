"""The error types of tuneyard.

Each class's docstring is its default message. ``error_type`` is the stable code (an ErrorType)
stored on a failed job and mapped to an exit code by the runner and to an HTTP status by the API
(which keeps that mapping in one module of its own).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar


class ErrorType(StrEnum):
    """Why a job failed, as stored in its `error.error_type`: the strings are a stored contract."""

    USER_ERROR = "user_error"  # the request, spec, data or model cannot be used; never retried
    PLATFORM_ERROR = "platform_error"  # tuneyard failed for a reason of its own; retried up to max_retries
    LEASE_LOST = "lease_lost"  # the worker lost the job's lease: another attempt owns the job now

    @classmethod
    def of(cls, code: object) -> ErrorType | None:
        """The type a stored code names; None for no code. A code tuneyard does not define (a
        runner may report a finer one; the stored error keeps it verbatim) reads as a platform error."""
        if not code:
            return None
        try:
            return cls(str(code))
        except ValueError:
            return cls.PLATFORM_ERROR


class TuneyardError(Exception):
    """Something went wrong in tuneyard."""

    error_type: ClassVar[ErrorType] = ErrorType.PLATFORM_ERROR

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)


class UserError(TuneyardError):
    """The request, spec, data or model cannot be used; retrying will not help."""

    error_type = ErrorType.USER_ERROR


class SpecError(UserError, ValueError):
    """The job spec is invalid."""

    def __init__(self, problems: list[dict[str, Any]], message: str | None = None) -> None:
        self.problems = problems
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        super().__init__(message or f"invalid job spec: {summary}", problems=problems)


class DataError(UserError):
    """The dataset cannot be used for training."""

    def __init__(self, message: str, errors: list[dict[str, Any]] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message, errors=self.errors)


class ModelNotFoundError(UserError):
    """The base model cannot be found or loaded."""


class UnsupportedError(UserError):
    """This combination of method and hardware is not supported here."""


class CheckpointError(UserError):
    """No usable checkpoint to resume from."""


class PlatformError(TuneyardError):
    """tuneyard failed for a reason of its own; the job may succeed when retried."""


class DeviceUnavailable(PlatformError):
    """The job requires a device this machine cannot train on."""


class RunStorageError(PlatformError):
    """The run storage (TUNEYARD_RUN_STORAGE) cannot be reached or used; the attempt may succeed when retried."""


class SettingsError(TuneyardError, ValueError):
    """A setting has a value tuneyard cannot use."""

    def __init__(self, variable: str, problem: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {problem}", variable=variable)


class ListenError(TuneyardError):
    """tuneyard cannot listen on its address."""
