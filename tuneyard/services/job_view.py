"""One job as every API and the console show it, derived from its row once.

A job's row holds what the store records (status, the runner's last progress record, the error);
what people read off it (how far along, the latest loss, done = 100 %) is derived here, so the
native API, the console and each dialect render the same figures in their own words. Its config,
spec and error show the server's paths as clients see them (`services/path_display.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tuneyard.errors import ErrorType
from tuneyard.services.path_display import PathDisplay
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Job


@dataclass(frozen=True)
class JobProgress:
    """How far the runner says it is; `percent` is 100 once the job completed."""

    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    percent: float | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class JobView:
    """A job, read: what every API renders, never the row itself."""

    id: str
    uuid: str
    """The job's UUID beside its id (tuneyard.store.uuids): what dialects that say UUID show."""
    org_id: str
    type: str
    name: str | None
    status: JobStatus
    project_id: str | None
    retries: int
    attempt: int
    max_retries: int
    last_checkpoint_step: int | None
    output_model_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: JobProgress
    loss: float | None
    """The latest training loss the runner reported."""
    error: dict[str, Any] | None
    """As stored (error_type, message, details; a runner's own finer error_type kept verbatim), paths shown."""
    error_type: ErrorType | None
    stop_requested: bool
    cancel_requested: bool
    config: dict[str, Any]
    """The resolved spec the runner gets, its paths as clients see them (the runner reads the stored one)."""
    spec: dict[str, Any]
    """The request as submitted."""
    labels: dict[str, dict[str, Any]]
    """Each dialect's own fields of the job, by dialect name."""
    paths: PathDisplay = field(repr=False, compare=False)
    """How this job's server paths are shown: for anything else of it a client reads (result, timeline)."""
    waiting: str | None = None
    """Why a queued job waits beyond its place in line: `waiting for a worker with ≥ 11.2 GB` while
    some live worker has less memory than its estimate (`services/memory_admission.py`)."""
    cost_usd: float | None = None
    """What the job cost, from its result (the worker prices every result: `planning/cost.py`); None until then."""

    @classmethod
    def of(cls, job: Job, shown: PathDisplay, waiting: str | None = None) -> JobView:
        """The job's view; `shown` is its path display (`path_display.for_job`), `waiting` why it waits."""
        raw = job.progress or {}
        return cls(
            id=job.id, uuid=job.uuid, org_id=job.org_id, type=job.type, name=job.name,
            status=JobStatus(job.status),
            project_id=job.project_id, retries=job.retries, attempt=job.attempt, max_retries=job.max_retries,
            last_checkpoint_step=job.last_checkpoint_step, output_model_id=job.output_model_id,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            progress=_progress(raw, job.status == JobStatus.COMPLETED), loss=raw.get("loss"),
            error=shown.value(job.error),
            error_type=ErrorType.of((job.error or {}).get("error_type")),
            stop_requested=job.stop_requested, cancel_requested=job.cancel_requested,
            config=shown.value(job.config), spec=shown.value(job.spec), labels=job.labels or {}, paths=shown,
            waiting=waiting, cost_usd=(job.result or {}).get("cost_usd"),
        )


def _progress(raw: dict[str, Any], completed: bool) -> JobProgress:
    step, total = raw.get("step"), raw.get("total_steps")
    percent = round(100.0 * step / total, 2) if isinstance(step, int) and total else None
    if completed:
        percent = 100.0
    return JobProgress(step=step, total_steps=total, epoch=raw.get("epoch"), percent=percent,
                       eta_s=raw.get("eta_s"))
