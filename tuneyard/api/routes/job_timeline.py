"""What a job did: events, metric points, log lines, checkpoints, and all of it live over SSE."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query
from fastapi.sse import EventSourceResponse, ServerSentEvent

from tuneyard.api.deps import Context, OwnedJob
from tuneyard.api.schemas.common import ERROR_RESPONSES, ListOf
from tuneyard.api.schemas.jobs import CheckpointPublic, EventPublic, LogPublic, MetricPublic
from tuneyard.services import timeline
from tuneyard.services.jobs import get_job
from tuneyard.store.status import JobStatus

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["jobs"], responses=ERROR_RESPONSES)

# The stream ends once the job rests in one of these and everything it wrote was sent.
RESTING = frozenset({JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value,
                     JobStatus.STOPPED.value})


@router.get("/events", response_model=ListOf[EventPublic])
def list_events(job: OwnedJob, context: Context, since: Annotated[int, Query(ge=0)] = 0,
                limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> ListOf[EventPublic]:
    """Events with seq > `since`, oldest first."""
    return ListOf(data=[EventPublic.of(e) for e in timeline.events(context.db, job.id, since, limit)])


@router.get("/metrics", response_model=ListOf[MetricPublic])
def list_metrics(
    job: OwnedJob, context: Context, since_step: Annotated[int, Query(ge=-1)] = -1,
    kind: Annotated[Literal["train", "eval"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> ListOf[MetricPublic]:
    """Metric points with step > `since_step`, by step."""
    points = timeline.metrics(context.db, job.id, since_step, kind, limit)
    return ListOf(data=[MetricPublic.of(p) for p in points])


@router.get("/logs", response_model=ListOf[LogPublic])
def list_logs(
    job: OwnedJob, context: Context, since: Annotated[int, Query(ge=0)] = 0,
    tail: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> ListOf[LogPublic]:
    """Log lines with seq > `since`, oldest first; `tail=N` keeps only the last N of them."""
    return ListOf(data=[LogPublic.of(line) for line in timeline.logs(context.db, job.id, since, tail, limit)])


@router.get("/checkpoints", response_model=ListOf[CheckpointPublic])
def list_checkpoints(job: OwnedJob, context: Context) -> ListOf[CheckpointPublic]:
    """Committed checkpoints by step; a checkpoint id is a valid `base_model` for a new job."""
    return ListOf(data=[CheckpointPublic.of(c) for c in timeline.checkpoints(context.db, job.id)])


def stream_cursor(
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100)] = None,
) -> timeline.StreamCursor:
    # A dependency, so a bad position is refused before the stream's 200 has been sent.
    return timeline.StreamCursor.decode(last_event_id)


@router.get("/stream", response_class=EventSourceResponse)
async def stream(
    job: OwnedJob, context: Context, cursor: Annotated[timeline.StreamCursor, Depends(stream_cursor)],
) -> AsyncIterator[ServerSentEvent]:
    """SSE of `event`, `metric` and `log` items, then one `end` once the job rests (completed,
    failed, cancelled or stopped). Each `id:` is a stream position: send it back as `Last-Event-ID`
    to resume with no gap and no repeat."""
    db, org_id, job_id = context.db, job.org_id, job.id
    while True:
        # Read the status before the items: anything written before a resting status is then
        # included in this batch, so ending after it loses nothing.
        current = await anyio.to_thread.run_sync(get_job, db, org_id, job_id)
        items = await anyio.to_thread.run_sync(timeline.next_items, db, job_id, cursor)
        for item in items:
            cursor = item.cursor
            yield ServerSentEvent(event=item.kind, id=cursor.encode(), data=item.data)
        if current.status in RESTING and not items:
            yield ServerSentEvent(event="end", id=cursor.encode(), data={"status": current.status})
            return
        if not items:
            await anyio.sleep(context.stream_poll_seconds)
