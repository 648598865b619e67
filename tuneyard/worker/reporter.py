"""What a supervisor tells the outside world about one job, and the lease check it relies on.

The supervisor only *tells*; it never polls the reporter for orders. Stop, cancel, checkpoint and
shutdown reach it through `Supervisor.request_*`, which any thread may call and which wake its loop
at once. The glue that implements this protocol (store writes fenced by the attempt number) is the
natural caller: when `heartbeat()` finds the job marked stopping or cancelling it calls
`request_stop()` / `request_cancel()` on the supervisor it serves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from tuneyard.worker.outcome import Outcome, TelemetryRecord


class JobReporter(Protocol):
    """Receives one attempt's events. Any method may raise `LeaseLost`; the runner is then killed."""

    def on_started(self, handle: str) -> None:
        """The runner is up; `handle` names it in logs (opaque: "local pid 4242", a remote task id)."""

    def on_records(self, records: Sequence[TelemetryRecord], offset: int) -> None:
        """The telemetry records completed since the last call, in file order; never empty.

        `offset` is the byte of the telemetry stream they were read through: stored with them, in
        one transaction, it is where a later attempt reads on. A call that raises anything but
        `LeaseLost` is offered again, with what was read since, at the next read.
        """

    def heartbeat(self) -> bool:
        """Extend the lease. False means another attempt owns the job now."""

    def on_finished(self, outcome: Outcome) -> None:
        """The attempt is over and the runner, with all it spawned, is gone. Called exactly once."""


class NullReporter:
    """Reports nowhere and always holds the lease: running a runner with nobody listening."""

    def on_started(self, handle: str) -> None:
        pass

    def on_records(self, records: Sequence[TelemetryRecord], offset: int) -> None:
        pass

    def heartbeat(self) -> bool:
        return True

    def on_finished(self, outcome: Outcome) -> None:
        pass


class RecordingReporter:
    """Keeps everything it is told, for tests; `wait_for` blocks until a condition holds.

    `lease_held` can be flipped from a test to make the next heartbeat report a stale attempt.
    """

    def __init__(self) -> None:
        self.handle: str | None = None
        self.records: list[TelemetryRecord] = []
        self.batches = 0
        self.offset = 0
        self.outcome: Outcome | None = None
        self.heartbeats = 0
        self.lease_held = True
        self._changed = threading.Condition()

    def on_started(self, handle: str) -> None:
        with self._changed:
            self.handle = handle
            self._changed.notify_all()

    def on_records(self, records: Sequence[TelemetryRecord], offset: int) -> None:
        with self._changed:
            self.records.extend(records)
            self.offset = offset
            self.batches += 1
            self._changed.notify_all()

    def heartbeat(self) -> bool:
        with self._changed:
            self.heartbeats += 1
            self._changed.notify_all()
            return self.lease_held

    def on_finished(self, outcome: Outcome) -> None:
        with self._changed:
            self.outcome = outcome
            self._changed.notify_all()

    def kinds(self) -> list[str]:
        with self._changed:
            return [str(r["kind"]) for r in self.records]

    def wait_for(self, condition: Callable[[RecordingReporter], bool], timeout: float = 10.0) -> None:
        """Block until `condition(self)` holds; TimeoutError after `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: condition(self), timeout):
                raise TimeoutError(f"condition not met within {timeout}s; records: {self.records[-5:]}")
