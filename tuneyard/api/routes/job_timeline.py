"""What a job did: events, metric points, log lines, checkpoints, and all of it live over SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from tuneyard.api.deps import Context, JobRead, OwnedJob
from tuneyard.api.schemas.common import ERROR_RESPONSES, ListOf
from tuneyard.api.schemas.jobs import CheckpointPublic, EventPublic, LogPublic, MetricPublic
from tuneyard.services import timeline
from tuneyard.store.jobs import owned_job
from tuneyard.store.status import JobStatus

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["jobs"], responses=ERROR_RESPONSES)

# The stream ends once the job rests in one of these and everything it wrote was sent.
RESTING = frozenset({JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value,
                     JobStatus.STOPPED.value})


# The timeline lists are the API's biggest answers (a dashboard's first read of a long run is
# thousands of points), so they are written straight to JSON from the same dicts the stream sends,
# not built as pydantic models and then validated again on the way out: several times cheaper.
# The response models still document them.

def _list(items: list[dict[str, Any]]) -> Response:
    return Response(json.dumps({"object": "list", "data": items}, separators=(",", ":")),
                    media_type="application/json")


@router.get("/events", response_model=ListOf[EventPublic])
async def list_events(read: JobRead, since: Annotated[int, Query(ge=0)] = 0,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Response:
    """Events with seq > `since`, oldest first."""
    return _list(await read(lambda s, job: [timeline.event_dict(e) for e in timeline.events(s, job.id, since, limit)]))


@router.get("/metrics", response_model=ListOf[MetricPublic])
async def list_metrics(
    read: JobRead, since_step: Annotated[int, Query(ge=-1)] = -1,
    kind: Annotated[Literal["train", "eval"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Metric points with step > `since_step`, by step."""
    return _list(await read(
        lambda s, job: [timeline.metric_dict(p) for p in timeline.metrics(s, job.id, since_step, kind, limit)]
    ))


@router.get("/logs", response_model=ListOf[LogPublic])
async def list_logs(
    read: JobRead, since: Annotated[int, Query(ge=0)] = 0,
    tail: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Log lines with seq > `since`, oldest first; `tail=N` keeps only the last N of them."""
    return _list(await read(
        lambda s, job: [timeline.log_dict(line) for line in timeline.logs(s, job.id, since, tail, limit)]
    ))


@router.get("/checkpoints", response_model=ListOf[CheckpointPublic])
async def list_checkpoints(read: JobRead) -> ListOf[CheckpointPublic]:
    """Committed checkpoints by step; a checkpoint id is a valid `base_model` for a new job."""
    return ListOf(data=await read(lambda s, job: [CheckpointPublic.of(c) for c in timeline.checkpoints(s, job.id)]))


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

    def poll(cursor: timeline.StreamCursor) -> tuple[str, list[timeline.StreamItem]]:
        # The status before the items, in one transaction: anything written before a resting
        # status is then in this batch, so ending after it loses nothing.
        with db.read() as session:
            return owned_job(session, org_id, job_id).status, timeline.next_items(session, job_id, cursor)

    while True:
        status, items = await anyio.to_thread.run_sync(poll, cursor)
        for item in items:
            cursor = item.cursor
            yield ServerSentEvent(event=item.kind, id=cursor.encode(), data=item.data)
        if status in RESTING and not items:
            yield ServerSentEvent(event="end", id=cursor.encode(), data={"status": status})
            return
        if not items:
            await anyio.sleep(context.stream_poll_seconds)
