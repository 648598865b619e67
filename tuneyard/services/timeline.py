"""A job's timeline (events, metric points, log lines, checkpoints) and the live stream over it.

The stream interleaves three kinds that each have their own order: events and logs by `seq`,
metric points by step within a kind (train, eval). A stream position is therefore the tuple of
those cursors, written as `e.l.t.v` in each SSE `id:`; `Last-Event-ID` hands it back, and the
stream resumes after exactly what the client had seen, whatever kind came last.

Events and log lines are the runner's words, which name the server's paths: what clients get of them
is shown through the job's `PathDisplay` (`services/path_display.py`), as its config and error are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from tuneyard.services import path_display
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.path_display import PathDisplay
from tuneyard.settings import Settings
from tuneyard.store import telemetry
from tuneyard.store.errors import NotFound
from tuneyard.store.jobs import owned_job
from tuneyard.store.tables import Checkpoint, Job, JobEvent

MAX_BATCH = 500


# Reads inside a caller's transaction (a request checks the key, loads the job and reads in one).

def events(session: Session, job_id: str, since: int = 0, limit: int = 1000) -> list[JobEvent]:
    return telemetry.read_events(session, job_id, since=since, limit=limit)


def metrics(session: Session, job_id: str, since_step: int = -1, kind: str | None = None,
            limit: int = 10_000) -> list[telemetry.MetricRecord]:
    return telemetry.read_metrics(session, job_id, since_step=since_step, kind=kind, limit=limit)


def progress_time(session: Session, job: Job) -> datetime | None:
    """When the runner reported the job's progress (its latest train point), None before any: the
    moment its `eta_s` counts from."""
    step = (job.progress or {}).get("step")
    return telemetry.train_point_time(session, job.id, step) if isinstance(step, int) else None


def logs(session: Session, job_id: str, since: int = 0, tail: int | None = None,
         limit: int = 10_000) -> list[telemetry.LogRecord]:
    return telemetry.read_logs(session, job_id, since=since, tail=tail, limit=limit)


def checkpoints(session: Session, job_id: str) -> list[Checkpoint]:
    return telemetry.read_checkpoints(session, job_id)


def shown_events(session: Session, settings: Settings, job: Job, since: int = 0, limit: int = 1000
                 ) -> list[dict[str, Any]]:
    """Events as clients get them: dicts, paths shown."""
    found = events(session, job.id, since, limit)
    shown = path_display.for_job(session, settings, job) if found else PathDisplay()
    return [event_dict(ev, shown) for ev in found]


def shown_logs(session: Session, settings: Settings, job: Job, since: int = 0, tail: int | None = None,
               limit: int = 10_000) -> list[dict[str, Any]]:
    """Log lines as clients get them: dicts, paths shown."""
    found = logs(session, job.id, since, tail, limit)
    shown = path_display.for_job(session, settings, job) if found else PathDisplay()
    return [log_dict(line, shown) for line in found]


@dataclass(frozen=True)
class StreamCursor:
    """The last event seq, log seq, train step and eval step a client has seen."""

    event: int = 0
    log: int = 0
    train: int = -1
    eval: int = -1

    def encode(self) -> str:
        return f"{self.event}.{self.log}.{self.train}.{self.eval}"

    @classmethod
    def decode(cls, raw: str | None) -> StreamCursor:
        if not raw:
            return cls()
        parts = raw.strip().split(".")
        try:
            event, log, train, eval_ = (int(p) for p in parts)
        except ValueError:
            raise InvalidRequest([{"field": "Last-Event-ID",
                                   "message": "not a stream position this server handed out"}]) from None
        return cls(event, log, train, eval_)


@dataclass(frozen=True)
class StreamItem:
    kind: str  # event | metric | log
    cursor: StreamCursor  # the position just after this item
    data: dict[str, Any]


@dataclass(frozen=True)
class StreamBatch:
    status: str | None  # the job's status before its items were read; None: the job is gone (deleted)
    items: list[StreamItem]
    shown: PathDisplay | None = None
    """How this job's paths are shown; the stream passes it back, as a job's config never changes."""
    revision: int | None = None
    """The job's revision when it was read: every change up to it is in this batch or an earlier one."""
    more: bool = False
    """A kind filled its MAX_BATCH: more may follow at once, before any change is noticed."""


def stream_batch(session: Session, settings: Settings, org_id: str, job_id: str, cursor: StreamCursor,
                 shown: PathDisplay | None = None) -> StreamBatch:
    """The job's status, then everything after `cursor`, in one transaction: anything written before a
    resting status is in this batch, so a stream that ends after it loses nothing. A job deleted
    while its stream is open has no status and nothing more to send. `shown` is the display an
    earlier batch of the same stream returned: each poll then reads no upload names again."""
    try:
        job = owned_job(session, org_id, job_id)
    except NotFound:
        return StreamBatch(None, [])
    shown = shown or path_display.for_job(session, settings, job)
    items, more = next_items(session, job_id, cursor, shown)
    return StreamBatch(job.status, items, shown, job.revision, more)


def next_items(session: Session, job_id: str, cursor: StreamCursor, shown: PathDisplay
               ) -> tuple[list[StreamItem], bool]:
    """Up to MAX_BATCH of each kind after `cursor`, oldest first within each kind; each item carries
    its position. True with them when a kind filled its MAX_BATCH (more may follow)."""
    events = telemetry.read_events(session, job_id, since=cursor.event, limit=MAX_BATCH)
    train = telemetry.read_metrics(session, job_id, since_step=cursor.train, kind="train", limit=MAX_BATCH)
    evals = telemetry.read_metrics(session, job_id, since_step=cursor.eval, kind="eval", limit=MAX_BATCH)
    lines = telemetry.read_logs(session, job_id, since=cursor.log, limit=MAX_BATCH)
    items: list[StreamItem] = []
    for ev in events:
        cursor = replace(cursor, event=ev.seq)
        items.append(StreamItem("event", cursor, event_dict(ev, shown)))
    for point in train:
        cursor = replace(cursor, train=point.step)
        items.append(StreamItem("metric", cursor, metric_dict(point)))
    for point in evals:
        cursor = replace(cursor, eval=point.step)
        items.append(StreamItem("metric", cursor, metric_dict(point)))
    for line in lines:
        cursor = replace(cursor, log=line.seq)
        items.append(StreamItem("log", cursor, log_dict(line, shown)))
    return items, any(len(found) == MAX_BATCH for found in (events, train, evals, lines))


def iso(ts: datetime) -> str:
    """ISO 8601 as pydantic writes it in every other answer of the API: UTC as `Z`."""
    text = ts.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def event_dict(ev: JobEvent, shown: PathDisplay) -> dict[str, Any]:
    return {"seq": ev.seq, "type": ev.type, "message": shown.text(ev.message), "data": shown.value(ev.data),
            "created_at": iso(ev.created_at)}


def metric_dict(point: telemetry.MetricRecord) -> dict[str, Any]:
    # A diverged run logs NaN or inf, which JSON cannot carry: null, as pydantic writes them.
    values = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in point.values.items()}
    return {"step": point.step, "kind": point.kind, "epoch": point.epoch, "phase": point.phase,
            "values": values, "ts": iso(point.ts)}


def log_dict(line: telemetry.LogRecord, shown: PathDisplay) -> dict[str, Any]:
    return {"seq": line.seq, "level": line.level, "message": shown.text(line.message), "ts": iso(line.ts)}
