"""What a job did: events, metric points, log lines, checkpoints, and all of it live over SSE."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse
from fastapi.sse import KEEPALIVE_COMMENT

from tuneyard.api.deps import AppContext, Context, JobRead, OwnedJob
from tuneyard.api.schemas.common import ERROR_RESPONSES, NOT_MODIFIED, ListOf
from tuneyard.api.schemas.jobs import CheckpointPublic, EventPublic, LogPublic, MetricPublic
from tuneyard.api.stream_reads import StreamReads, Wakeup, encode
from tuneyard.services import timeline
from tuneyard.services.path_display import PathDisplay
from tuneyard.store.engine import Database
from tuneyard.store.status import JobStatus

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["jobs"], responses=ERROR_RESPONSES)

# The stream ends once the job rests in one of these and everything it wrote was sent.
RESTING = frozenset({JobStatus.COMPLETED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value,
                     JobStatus.STOPPED.value})
GONE = "deleted"
"""The `end` event's status when the job was deleted while its stream was open."""
POSITION_MAX = 2**31 - 1
"""The largest seq or step a query may name: they are compared with INTEGER columns, 32-bit on
PostgreSQL, which answered since_step=6377778719 with an error (a 500) instead of an empty list."""
KEEPALIVE_SECONDS = 15.0
"""An idle stream sends a comment this often, so proxies and clients keep it open."""


# The timeline lists are the API's biggest answers (a dashboard's first read of a long run is
# thousands of points), so they are written straight to JSON from the same dicts the stream sends,
# not built as pydantic models and then validated again on the way out: several times cheaper.
# The response models still document them.

def _list(items: list[dict[str, Any]]) -> Response:
    return Response(json.dumps({"object": "list", "data": items}, separators=(",", ":")),
                    media_type="application/json")


@router.get("/events", response_model=ListOf[EventPublic], responses=NOT_MODIFIED)
async def list_events(read: JobRead, since: Annotated[int, Query(ge=0, le=POSITION_MAX)] = 0,
                      limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> Response:
    """Events with seq > `since`, oldest first. With the `ETag` of the same request in `If-None-Match`: 304
    while the job has not changed."""
    answer = await read.unless_unchanged(lambda s, job: timeline.shown_events(s, read.settings, job, since, limit))
    return answer.response(_list)


@router.get("/metrics", response_model=ListOf[MetricPublic], responses=NOT_MODIFIED)
async def list_metrics(
    read: JobRead, since_step: Annotated[int, Query(ge=-1, le=POSITION_MAX)] = -1,
    kind: Annotated[Literal["train", "eval"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Metric points with step > `since_step`, by step. With the `ETag` of the same request in
    `If-None-Match`: 304 while the job has not changed, without the points being read."""
    answer = await read.unless_unchanged(
        lambda s, job: [timeline.metric_dict(p) for p in timeline.metrics(s, job.id, since_step, kind, limit)]
    )
    return answer.response(_list)


@router.get("/logs", response_model=ListOf[LogPublic], responses=NOT_MODIFIED)
async def list_logs(
    read: JobRead, since: Annotated[int, Query(ge=0, le=POSITION_MAX)] = 0,
    tail: Annotated[int | None, Query(ge=1, le=100_000)] = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> Response:
    """Log lines with seq > `since`, oldest first; `tail=N` keeps only the last N of them. With the `ETag`
    of the same request in `If-None-Match`: 304 while the job has not changed, without the lines being read."""
    answer = await read.unless_unchanged(lambda s, job: timeline.shown_logs(s, read.settings, job, since, tail,
                                                                            limit))
    return answer.response(_list)


@router.get("/checkpoints", response_model=ListOf[CheckpointPublic])
async def list_checkpoints(read: JobRead) -> ListOf[CheckpointPublic]:
    """Committed checkpoints by step; a checkpoint id is a valid `base_model` for a new job."""
    return ListOf(data=await read(lambda s, job: [CheckpointPublic.of(c) for c in timeline.checkpoints(s, job.id)]))


STREAM_POSITION = r"^-?[0-9]{1,9}(\.-?[0-9]{1,9}){3}$"
"""An `id:` the stream sent: four counters, each within POSITION_MAX."""
_POSITION_SHAPE = re.compile(STREAM_POSITION.removeprefix("^").removesuffix("$"))


def stream_cursor(
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=100,
                                                pattern=STREAM_POSITION)] = None,
) -> timeline.StreamCursor:
    # A dependency, so a bad position is refused before the stream's 200 has been sent.
    return timeline.StreamCursor.decode(last_event_id)


class EventStream(StreamingResponse):
    """SSE bytes we write ourselves (FastAPI's `EventSourceResponse` wants the route to be a generator)."""

    media_type = "text/event-stream"


_REF = "#/components/schemas/"
STREAM_ITEM: dict[str, Any] = {
    "type": "object",
    "description": "One SSE event: `event` names its kind, `data` is JSON (an event, a metric point, a log line, "
                   "or the end's status), `id` its stream position.",
    "required": ["event", "data"],
    "properties": {
        "event": {"type": "string", "enum": ["event", "metric", "log", "end"]},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"anyOf": [
            {"$ref": _REF + "EventPublic"}, {"$ref": _REF + "MetricPublic"}, {"$ref": _REF + "LogPublic"},
            {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
        ]}},
        "id": {"type": "string"},
    },
}
"""What each item of /stream is (OpenAPI 3.2's `itemSchema`, as FastAPI documents its own SSE routes)."""


@router.get("/stream", response_class=EventStream,
            responses={200: {"content": {"text/event-stream": {"itemSchema": STREAM_ITEM}}}})
async def stream(
    job: OwnedJob, context: Context, cursor: Annotated[timeline.StreamCursor, Depends(stream_cursor)],
) -> EventStream:
    """SSE of `event`, `metric` and `log` items, then one `end` once the job rests (completed,
    failed, cancelled or stopped) or is deleted (`{"status": "deleted"}`). Each `id:` is a stream
    position: send it back as `Last-Event-ID` to resume with no gap and no repeat. An idle stream
    sends a comment (`: ping`) every 15 s."""
    return event_stream(context, job.org_id, job.id, cursor)


def event_stream(context: AppContext, org_id: str, job_id: str, cursor: timeline.StreamCursor) -> EventStream:
    """The stream of an authorized job from `cursor`: the route's answer, and `api/hot_reads.py`'s."""
    body = _sse(context.db, context.stream_reads, context.stream_poll_seconds, org_id, job_id, cursor)
    return EventStream(body, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def stream_position(raw: str) -> bool:
    """Whether a `Last-Event-ID` is one the route's header check takes (STREAM_POSITION, at most 100 chars)."""
    return len(raw) <= 100 and _POSITION_SHAPE.fullmatch(raw) is not None


async def _sse(db: Database, reads: StreamReads, poll_seconds: float, org_id: str, job_id: str,
               cursor: timeline.StreamCursor) -> AsyncIterator[bytes]:
    # Written here rather than yielded to FastAPI's SSE wrapper: its keep-alive task raised
    # BrokenResourceError into the log whenever a client left an idle stream.
    # The stream reads the job again when `db.changes` says it changed: at once for this process's
    # commits (the embedded workers' telemetry, a user's stop), and through the follower
    # (`store/notices.py`) for another process's. So an idle stream reads nothing; `poll_seconds` is
    # only a safety net under a lost notice. The streams of one job that a change wakes share one
    # read of it (`api/stream_reads.py`).
    changed = Wakeup(reads)
    unwatch = db.changes.watch(job_id, changed.set)
    shown: PathDisplay | None = None
    quiet_since = anyio.current_time()
    try:
        while True:
            # Taken before the read: a change committed during it wakes the wait below.
            batch = await reads.batch(org_id, job_id, cursor, shown, changed.take())
            shown = batch.shown
            changed.read(batch.revision)
            for item in batch.items:
                cursor = item.cursor
                yield item.frame
            # The status was read before the items: resting then, everything it wrote is in this batch
            # unless a kind filled it.
            if batch.status is None or (batch.status in RESTING and not batch.more):
                yield encode("end", cursor, {"status": batch.status or GONE})
                return
            if batch.items:
                quiet_since = anyio.current_time()
            if batch.more:  # read on before waiting; otherwise a change's wake-up says when to read
                continue
            poll_at = anyio.current_time() + poll_seconds
            # Until a change (or the slow poll) is due, only the keep-alive comment is sent: no read.
            while not await changed.wait(min(poll_at, quiet_since + KEEPALIVE_SECONDS) - anyio.current_time()):
                if anyio.current_time() >= quiet_since + KEEPALIVE_SECONDS:
                    quiet_since = anyio.current_time()
                    yield KEEPALIVE_COMMENT
                if anyio.current_time() >= poll_at:
                    break
    finally:
        unwatch()
