"""Jobs and their timeline, as the API shows them."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tuneyard.api.schemas.common import Request
from tuneyard.services.job_view import JobView
from tuneyard.spec.text import Ident
from tuneyard.store.tables import Checkpoint


class Progress(BaseModel):
    step: int | None = None
    total_steps: int | None = None
    epoch: float | None = None
    percent: float | None = None
    eta_s: float | None = None


class JobPublic(BaseModel):
    id: str
    object: str = "job"
    type: str
    name: str | None
    status: str
    project_id: str | None
    retries: int
    attempt: int
    max_retries: int
    last_checkpoint_step: int | None
    output_model_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    loss: float | None = Field(None, description="The latest training loss.")
    error: dict[str, Any] | None = Field(description=(
        "error_type, message and details of a failed job; files are named as uploaded, with their id."))
    stop_requested: bool
    cancel_requested: bool
    config: dict[str, Any] = Field(description=(
        "The resolved spec the runner gets. Paths are shown as a client knows them: uploads as "
        "`name (file id)`, a checkpoint or model base by its id, the run folder's files relative to it "
        "(as `artifacts/{path}` takes them), anything else in the data folder as `<data>/…`."))
    spec: dict[str, Any] = Field(description="The request as submitted.")
    waiting_reason: str | None = Field(None, description=(
        "Why a queued job waits beyond its place in line, e.g. `waiting for a worker with ≥ 11.2 GB`: its "
        "memory estimate is more than some live worker has, and only a worker with that much claims it; or "
        "`waiting for a worker that trains on cuda; ...`: it requires a device no live worker trains on."))
    cost_usd: float | None = Field(None, description=(
        "What the completed job cost in USD: its compute seconds times the configured price per device-hour of "
        "the device it ran on (0 where no price is set); null until it completes."))

    @classmethod
    def of(cls, view: JobView) -> JobPublic:
        """The native rendering of a job's view."""
        return cls(
            id=view.id, type=view.type, name=view.name, status=view.status.value, project_id=view.project_id,
            retries=view.retries, attempt=view.attempt, max_retries=view.max_retries,
            last_checkpoint_step=view.last_checkpoint_step, output_model_id=view.output_model_id,
            created_at=view.created_at, started_at=view.started_at, finished_at=view.finished_at,
            progress=Progress(**asdict(view.progress)), loss=view.loss, error=view.error,
            stop_requested=view.stop_requested, cancel_requested=view.cancel_requested, config=view.config,
            spec=view.spec, waiting_reason=view.waiting, cost_usd=view.cost_usd,
        )


class JobPage(BaseModel):
    object: str = "list"
    data: list[JobPublic]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")
    has_more: bool


class ResumeRequest(Request):
    checkpoint: Ident | None = Field(None, description="A checkpoint id of this job; the latest when omitted.")


# The three timeline items below document what the lists and the stream send; those answers are
# written from services/timeline.py's dicts (tests hold the two to the same shape).

class EventPublic(BaseModel):
    seq: int
    type: str
    message: str
    data: dict[str, Any]
    created_at: datetime


class MetricPublic(BaseModel):
    step: int
    kind: str
    epoch: float | None
    phase: str | None
    values: dict[str, Any]
    ts: datetime


class LogPublic(BaseModel):
    seq: int
    level: str
    message: str
    ts: datetime


class CheckpointPublic(BaseModel):
    id: str
    job_id: str
    step: int
    metrics: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, c: Checkpoint) -> CheckpointPublic:
        return cls(id=c.id, job_id=c.job_id, step=c.step, metrics=c.metrics, created_at=c.created_at)


class ArtifactPublic(BaseModel):
    path: str
    bytes: int

