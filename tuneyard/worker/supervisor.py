"""Supervision of one runner attempt: start it, relay its telemetry, stop it, judge how it ended.

`Supervisor.run()` blocks the calling thread for the life of the runner. Other threads steer it
with `request_stop/cancel/release/checkpoint()`, which only record the wish and wake the loop; the
loop alone talks to the process, so there is one place where escalation happens.

The runner is reached only through its `RunnerProcess` handle (telemetry, log tail, requests), never
through this machine's disk or signals, so the same loop supervises a runner on any executor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tuneyard.errors import PlatformError
from tuneyard.settings import Settings
from tuneyard.training import contract
from tuneyard.worker.executors import Executor, Launch, RunnerProcess
from tuneyard.worker.outcome import (
    Ending,
    ExitStatus,
    LeaseLost,
    Outcome,
    Request,
    TelemetryRecord,
    Verdict,
    decide,
    error_from_log,
    error_type_for,
)
from tuneyard.worker.reporter import JobReporter, NullReporter
from tuneyard.worker.telemetry import TelemetryTailer

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 50
_FAILED = object()
"""What `_tell` returns when the reporter raised (anything but LeaseLost)."""


@dataclass(frozen=True)
class SupervisorTimings:
    stop_grace_seconds: float = 60.0
    """How long a stopping (or released) runner may take to checkpoint and exit before it is killed."""
    cancel_grace_seconds: float = 10.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 0.2
    """How often the loop looks at the runner (has it exited?) while nothing else happens."""
    telemetry_seconds: float = 1.0
    """How often telemetry is read and stored. Each read is one database transaction, made on the
    cores the runner trains on: this bounds how stale live metrics are and what watching costs."""

    @classmethod
    def from_settings(cls, settings: Settings, poll_seconds: float = 0.2) -> SupervisorTimings:
        return cls(
            settings.stop_grace_seconds,
            settings.cancel_grace_seconds,
            settings.heartbeat_seconds,
            poll_seconds,
            settings.telemetry_seconds,
        )


@dataclass
class _Attempt:
    """What the loop knows about the running attempt."""

    process: RunnerProcess
    tailer: TelemetryTailer
    next_heartbeat: float
    next_pump: float = 0.0
    acted: Request = Request.NONE
    deadline: float | None = None
    forced: bool = False
    last: dict[str, TelemetryRecord] = field(default_factory=dict)
    """The latest record of each kind; the verdict reads "result", "error" and "checkpoint"."""
    unstored: list[TelemetryRecord] = field(default_factory=list)
    """Records read but not yet taken by the reporter (it failed): offered again with the next read,
    so the offset it stores never covers a record it has not stored."""


class Supervisor:
    def __init__(
        self,
        launch: Launch,
        *,
        executor: Executor,
        reporter: JobReporter | None = None,
        timings: SupervisorTimings | None = None,
        telemetry_offset: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.launch = launch
        self.job_id = launch.job_id
        self._executor = executor
        self._reporter: JobReporter = reporter or NullReporter()
        self._timings = timings or SupervisorTimings()
        self._telemetry_offset = telemetry_offset
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._requested = Request.NONE
        self._checkpoint_wanted = False

    # Steering, from any thread.

    def request_stop(self) -> None:
        """Checkpoint and exit (the runner's stop); killed after the stop grace. Ends `stopped`."""
        self._ask(Request.STOP)

    def request_cancel(self) -> None:
        """Stop the runner (abort it if already stopping); killed after the cancel grace."""
        self._ask(Request.CANCEL)

    def request_release(self) -> None:
        """The worker is shutting down: stop like `request_stop`, but the job goes back to the queue."""
        self._ask(Request.RELEASE)

    def request_checkpoint(self) -> None:
        """Ask the runner for a checkpoint at its next step boundary; it keeps training."""
        with self._lock:
            self._checkpoint_wanted = True
        self._wake.set()

    def _ask(self, request: Request) -> None:
        with self._lock:
            self._requested = max(self._requested, request)
        self._wake.set()

    # The loop.

    def run(self) -> Outcome:
        """Run the attempt to its end and return (and report) its outcome."""
        with self._lock:
            early = self._requested
        if early is not Request.NONE:
            return self._finish(self._not_started(early))
        try:
            process = self._executor.start(self.launch)
        except OSError as exc:
            return self._finish(
                Outcome(
                    Verdict.FAILED,
                    None,
                    f"runner could not be started: {exc}",
                    error_type=PlatformError.error_type,
                    telemetry_offset=self._telemetry_offset,
                )
            )
        tailer = TelemetryTailer(process.read_telemetry, job_id=self.job_id, offset=self._telemetry_offset)
        now = self._clock()
        # The first read after one interval: a runner spends its first seconds importing, not writing.
        attempt = _Attempt(process, tailer, next_heartbeat=now + self._timings.heartbeat_seconds,
                           next_pump=now + self._timings.telemetry_seconds)
        try:
            self._tell(attempt, self._reporter.on_started, process.handle)
            self._watch(attempt)
        finally:
            # Whatever happened here (even an exception in this thread), nothing outlives us.
            status = process.release()
            self._pump(attempt)
        return self._finish(self._judge(attempt, status))

    def _watch(self, attempt: _Attempt) -> None:
        while attempt.process.exited() is None:
            self._wake.clear()  # before reading requests, so one arriving later still wakes the wait
            self._pump_if_due(attempt)
            self._heartbeat_if_due(attempt)
            self._act_on_requests(attempt)
            self._escalate_if_overdue(attempt)
            self._wake.wait(self._wait_seconds(attempt))

    def _wait_seconds(self, attempt: _Attempt) -> float:
        until = [self._timings.poll_seconds, attempt.next_heartbeat - self._clock()]
        if attempt.deadline is not None and not attempt.forced:
            until.append(attempt.deadline - self._clock())
        return max(0.0, min(until))

    def _pump_if_due(self, attempt: _Attempt) -> None:
        now = self._clock()
        if now >= attempt.next_pump:
            attempt.next_pump = now + self._timings.telemetry_seconds
            self._pump(attempt)

    def _pump(self, attempt: _Attempt) -> None:
        records = attempt.tailer.read_records()
        for record in records:
            attempt.last[str(record["kind"])] = record
        attempt.unstored.extend(records)
        if attempt.unstored and attempt.acted is not Request.LOST_LEASE:
            told = self._tell(attempt, self._reporter.on_records, list(attempt.unstored), attempt.tailer.offset)
            if told is not _FAILED:
                attempt.unstored = []

    def _heartbeat_if_due(self, attempt: _Attempt) -> None:
        now = self._clock()
        if now < attempt.next_heartbeat:
            return
        attempt.next_heartbeat = now + self._timings.heartbeat_seconds  # also paces the wait
        if attempt.acted is Request.LOST_LEASE:
            return
        if self._tell(attempt, self._reporter.heartbeat) is False:
            self._lose_lease(attempt)

    def _act_on_requests(self, attempt: _Attempt) -> None:
        with self._lock:
            wanted, checkpoint = self._requested, self._checkpoint_wanted
            self._checkpoint_wanted = False
        if checkpoint and wanted is Request.NONE:
            log.info("job %s: asking the runner for a checkpoint", self.job_id)
            attempt.process.checkpoint()
        if wanted <= attempt.acted:
            return
        previous, attempt.acted = attempt.acted, wanted
        if wanted is Request.LOST_LEASE:
            attempt.process.kill()
            return
        grace = self._grace(wanted)
        deadline = self._clock() + grace
        attempt.deadline = deadline if attempt.deadline is None else min(attempt.deadline, deadline)
        # A runner already stopping gracefully is left to finish unless this is a cancel, which
        # wants it gone without its checkpoint.
        if previous is Request.NONE:
            log.info("job %s: %s requested; stopping the runner, killing it in %.1fs", self.job_id,
                     wanted.name.lower(), grace)
            attempt.process.stop()
        elif wanted is Request.CANCEL:
            log.info("job %s: cancel requested while stopping; aborting the runner, killing it in %.1fs",
                     self.job_id, grace)
            attempt.process.abort()

    def _grace(self, request: Request) -> float:
        if request is Request.CANCEL:
            return self._timings.cancel_grace_seconds
        return self._timings.stop_grace_seconds

    def _escalate_if_overdue(self, attempt: _Attempt) -> None:
        if attempt.deadline is None or attempt.forced or self._clock() < attempt.deadline:
            return
        log.warning("job %s: runner did not exit within its grace; killing it", self.job_id)
        attempt.forced = True
        attempt.process.kill()

    def _lose_lease(self, attempt: _Attempt) -> None:
        log.warning("job %s: lease lost to another attempt; killing the runner now", self.job_id)
        self._ask(Request.LOST_LEASE)
        self._act_on_requests(attempt)

    def _tell(self, attempt: _Attempt, method: Callable[..., Any], *args: Any) -> Any:
        """Call the reporter; a lost lease kills the runner, anything else is logged and survived.

        A reporter that fails (a database hiccup) must not leave a runner unsupervised: the lease
        check decides whether the job is still ours, not a single failed write.
        """
        try:
            return method(*args)
        except LeaseLost:
            if attempt.acted is not Request.LOST_LEASE:
                self._lose_lease(attempt)
        except Exception:
            log.exception("job %s: reporter %s failed", self.job_id, method.__name__)
            return _FAILED
        return None

    # The verdict.

    def _judge(self, attempt: _Attempt, status: ExitStatus) -> Outcome:
        result, error = attempt.last.get(contract.KIND_RESULT), attempt.last.get(contract.KIND_ERROR)
        tail: list[str] = []
        if status.returncode != contract.EXIT_COMPLETED or result is None:
            tail = attempt.process.log_tail(LOG_TAIL_LINES)
        ending = Ending(attempt.acted, status, attempt.forced, result, error or error_from_log(tail))
        verdict, message = decide(ending)
        unexplained = verdict in (Verdict.FAILED, Verdict.USER_ERROR)
        details = dict(ending.error.get("details") or {}) if ending.error else {}
        if unexplained:
            details.update(exit_code=status.exit_code, signal=status.signal_name)
        return Outcome(
            verdict=verdict,
            exit=status,
            message=message,
            error_type=error_type_for(verdict, ending),
            details=details,
            result=ending.result,
            last_checkpoint=attempt.last.get(contract.KIND_CHECKPOINT),
            log_tail=tail if unexplained else [],
            forced=attempt.forced,
            telemetry_offset=attempt.tailer.offset,
        )

    def _not_started(self, request: Request) -> Outcome:
        verdict = {Request.CANCEL: Verdict.CANCELLED, Request.STOP: Verdict.STOPPED}.get(request, Verdict.RELEASED)
        return Outcome(
            verdict,
            None,
            f"{verdict.value} before the runner started",
            telemetry_offset=self._telemetry_offset,
        )

    def _finish(self, outcome: Outcome) -> Outcome:
        log.info("job %s: attempt ended %s: %s", self.job_id, outcome.verdict.value, outcome.message)
        try:
            self._reporter.on_finished(outcome)
        except Exception:
            # The outcome is returned either way; the caller decides what a lost report means.
            log.exception("job %s: reporter on_finished failed", self.job_id)
        return outcome
