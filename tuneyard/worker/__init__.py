"""Workers: claim jobs, supervise one runner per job, report what it does.

The supervisor imports neither the store nor the API; it talks to the outside through
`JobReporter`, which the worker glue implements with fenced store writes.
"""

from __future__ import annotations

from tuneyard.worker.executors import Executor, Launch, RunnerProcess
from tuneyard.worker.executors.local import LocalExecutor
from tuneyard.worker.executors.registry import ExecutorRegistry, make_executor, shipped_executors
from tuneyard.worker.outcome import ExitStatus, LeaseLost, Outcome, TelemetryRecord, Verdict
from tuneyard.worker.reporter import JobReporter, NullReporter, RecordingReporter
from tuneyard.worker.supervisor import Supervisor, SupervisorTimings
from tuneyard.worker.telemetry import MalformedLine, TelemetryTailer

__all__ = [
    "Executor",
    "ExecutorRegistry",
    "ExitStatus",
    "JobReporter",
    "Launch",
    "LeaseLost",
    "LocalExecutor",
    "MalformedLine",
    "NullReporter",
    "Outcome",
    "RecordingReporter",
    "RunnerProcess",
    "Supervisor",
    "SupervisorTimings",
    "TelemetryRecord",
    "TelemetryTailer",
    "Verdict",
    "make_executor",
    "shipped_executors",
]
