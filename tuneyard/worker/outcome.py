"""What became of one runner attempt, and how the supervisor decides it.

The verdict is a pure function of what the supervisor asked for, how the process ended and what
the runner wrote last, so it is tested without starting any process.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field
from typing import Any

from tuneyard.errors import ErrorType, PlatformError, UserError
from tuneyard.training import contract

TelemetryRecord = dict[str, Any]
"""One parsed line of telemetry.jsonl: a JSON object with at least a string "kind"."""


class LeaseLost(PlatformError):
    """This worker no longer holds the job: another attempt owns it now."""

    error_type = ErrorType.LEASE_LOST


class Verdict(enum.StrEnum):
    COMPLETED = "completed"
    """Exit 0 and a result record: the job's work is done."""
    STOPPED = "stopped"
    """Stopped on request (exit 75, or killed after the stop grace): resumable from a checkpoint."""
    USER_ERROR = "user_error"
    """Exit 3: the spec, data or model cannot be used; never retried."""
    CANCELLED = "cancelled"
    """Cancelled on request, however the process ended."""
    RELEASED = "released"
    """The worker is shutting down and handed the job back; not counted as a retry."""
    LOST_LEASE = "lost_lease"
    """Another attempt owns the job; this worker must write nothing more about it."""
    FAILED = "failed"
    """Any other ending (other exit code, death by signal, exit 0 without a result): retryable."""


class Request(enum.IntEnum):
    """What the supervisor was asked to do, ordered so that a stronger request overrides a weaker."""

    NONE = 0
    RELEASE = 1  # worker shutdown: give the job back, with a checkpoint if the runner can
    STOP = 2  # the user's stop outranks a shutdown: the job ends stopped, not re-queued
    CANCEL = 3
    LOST_LEASE = 4  # nothing may be written any more, so it outranks everything


@dataclass(frozen=True)
class ExitStatus:
    """How a process ended, in subprocess's convention: a negative returncode is a signal."""

    returncode: int
    lost: str | None = None
    """Why the executor lost sight of the runner (its Ray actor or node died), when it did: the runner
    is gone without an exit status of its own, and the attempt is judged as a crash (retried from the
    last checkpoint). Its returncode is then SIGKILL's, how a runner whose host died ends
    (`child_process.exit_with_parent`)."""

    @classmethod
    def lost_runner(cls, why: str) -> ExitStatus:
        return cls(-signal.SIGKILL, lost=why)

    @property
    def exit_code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None

    @property
    def signal_name(self) -> str | None:
        if self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"

    def describe(self) -> str:
        if self.lost:
            return f"was lost ({self.lost})"
        return f"killed by {self.signal_name}" if self.signal_name else f"exited {self.returncode}"


@dataclass(frozen=True)
class Outcome:
    """The supervisor's account of one attempt, handed to the reporter and returned by run()."""

    verdict: Verdict
    exit: ExitStatus | None
    """None when the runner was never started (cancelled or released before launch)."""
    message: str
    error_type: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    result: TelemetryRecord | None = None
    last_checkpoint: TelemetryRecord | None = None
    log_tail: list[str] = field(default_factory=list)
    """The last lines of runner.log, kept for endings the runner did not explain itself."""
    forced: bool = False
    """The runner outlived its grace period and was SIGKILLed."""
    telemetry_offset: int = 0
    """Bytes of telemetry.jsonl consumed; the next attempt's supervisor starts here."""

    @property
    def exit_code(self) -> int | None:
        return self.exit.exit_code if self.exit else None

    @property
    def signal_name(self) -> str | None:
        return self.exit.signal_name if self.exit else None


@dataclass(frozen=True)
class Ending:
    """The facts a verdict is decided from."""

    request: Request
    exit: ExitStatus
    forced: bool
    result: TelemetryRecord | None
    error: TelemetryRecord | None


def decide(ending: Ending) -> tuple[Verdict, str]:
    """The verdict and a one-line message for how an attempt ended."""
    code, request = ending.exit.returncode, ending.request
    if request is Request.LOST_LEASE:
        return Verdict.LOST_LEASE, "another attempt owns the job; the runner was killed"
    if request is Request.CANCEL:
        return Verdict.CANCELLED, f"cancelled; runner {ending.exit.describe()}"
    if code == contract.EXIT_COMPLETED and ending.result is not None:
        # A finished job stays finished even if a stop or shutdown raced its last step.
        return Verdict.COMPLETED, "completed"
    if code == contract.EXIT_USER_ERROR:
        return Verdict.USER_ERROR, _error_message(ending, "runner reported a user error")
    # Ended by our own signal: the grace ran out, or the stop came before the runner had its
    # handlers installed (still loading) and SIGTERM's default action ended it. Either way the
    # last committed checkpoint stands, so the request's verdict holds.
    ended_by_us = ending.forced or code == -contract.SIGNAL_STOP
    if request is Request.STOP and (code == contract.EXIT_STOPPED or ended_by_us):
        return Verdict.STOPPED, _stop_message(ending, "stopped")
    if request is Request.RELEASE and (code == contract.EXIT_STOPPED or ended_by_us):
        return Verdict.RELEASED, _stop_message(ending, "released to the queue")
    if code == contract.EXIT_STOPPED:
        # Someone else (an operator, the OS at shutdown) sent the stop signal; the runner
        # still checkpointed, so the job is resumable like any stop.
        return Verdict.STOPPED, "runner stopped without a stop request"
    if code == contract.EXIT_COMPLETED:
        return Verdict.FAILED, "runner exited 0 without a result record"
    return Verdict.FAILED, _error_message(ending, f"runner {ending.exit.describe()} without a verdict")


def error_type_for(verdict: Verdict, ending: Ending) -> str | None:
    """The stable error code stored on a job that did not succeed; None when nothing went wrong."""
    if verdict is Verdict.USER_ERROR:
        reported = ending.error.get("error_type") if ending.error else None
        return str(reported) if reported else UserError.error_type
    if verdict is Verdict.FAILED:
        reported = ending.error.get("error_type") if ending.error else None
        return str(reported) if reported else PlatformError.error_type
    if verdict is Verdict.LOST_LEASE:
        return LeaseLost.error_type
    return None


def error_from_log(lines: list[str]) -> TelemetryRecord | None:
    """The runner's own last words from runner.log, for an ending its telemetry does not explain.

    A runner that could not open its telemetry (an unreadable run folder, a crash while importing)
    still printed `error: ...` (a user error) or a Python traceback; that line says more to a user
    than an exit code. The error type stays the exit code's: a log line cannot be trusted to name it.
    """
    for line in reversed(lines):
        text = line.strip()
        if text.startswith("error: "):
            return {"kind": contract.KIND_ERROR, "message": text.removeprefix("error: "), "source": "runner.log"}
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            last = next((ln.strip() for ln in reversed(lines[index:]) if ln.strip() and not ln[0].isspace()), "")
            if last and not last.startswith("Traceback"):
                return {"kind": contract.KIND_ERROR, "message": last, "source": "runner.log"}
    return None


def _stop_message(ending: Ending, what: str) -> str:
    if ending.forced:
        return f"{what}: runner did not exit within its grace and was killed; last checkpoint kept"
    if ending.exit.returncode != contract.EXIT_STOPPED:
        return f"{what}: runner {ending.exit.describe()} before it could checkpoint; last checkpoint kept"
    return what


def _error_message(ending: Ending, fallback: str) -> str:
    if ending.error is not None and ending.error.get("message"):
        return str(ending.error["message"])
    return fallback
