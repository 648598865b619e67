"""A job's timeline: metric points, log lines, events and checkpoints.

Writes come from the worker that holds the job and are fenced by its attempt (status.fence), so a
worker that lost its lease cannot add to a job another attempt now runs. Each batch read from the
runner's telemetry.jsonl is committed with the byte offset it was read through (jobs.telemetry_offset),
so a later attempt reads on from exactly there: every line is stored once, across crashes. What an
attempt's runner wrote but a crash kept from the store is stored by the next attempt, marked as the
earlier one's (`record_backlog`). A step repeats when a run resumes from an earlier checkpoint: the
metric point and checkpoint stored first for a step are kept, a repeat is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.status import Event, fence, write_event
from tuneyard.store.tables import Checkpoint, Job, JobEvent, LogLine, MetricPoint
from tuneyard.store.upsert import insert_ignoring_duplicates

PROGRESS_KEYS = ("step", "total_steps", "epoch", "eta_s", "loss")


@dataclass(frozen=True)
class MetricIn:
    step: int
    values: dict[str, Any]
    kind: str = "train"  # train | eval
    epoch: float | None = None
    phase: str | None = None
    ts: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class LogIn:
    message: str
    level: str = "info"
    ts: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class CheckpointIn:
    step: int
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    pruned: tuple[int, ...] = ()
    """Steps of older checkpoints the runner deleted as it kept this one (save_total_limit)."""


TelemetryItem = MetricIn | LogIn | Event | CheckpointIn


def record_telemetry(db: Database, job_id: str, attempt: int, items: Sequence[TelemetryItem], *,
                     offset: int | None = None) -> None:
    """A batch of a runner's telemetry (one read of its file) in one fenced transaction.

    One transaction a batch, not one a record: a supervisor shares its cores with the runner it
    watches, and a commit costs more than the rows in it. Events and checkpoints keep their order.
    `offset`, the byte the file was read through, is committed with the batch that covers it.
    """
    _record(db, job_id, attempt, items, offset, written_by=attempt)


def record_backlog(db: Database, job_id: str, attempt: int, items: Sequence[TelemetryItem], *, offset: int,
                   written_by: int | None) -> None:
    """What an earlier attempt's runner wrote and the store never saw (its worker died first), stored
    once by `attempt` before it starts its own runner, under `attempt`'s fence.

    The rows are marked as `written_by`'s (the job's telemetry_attempt when it was claimed). `offset`
    is where the file ends now, so where `attempt`'s runner will begin: it is committed with the
    rows, and `attempt` becomes the one writing past it, even when there is no backlog at all.
    """
    _record(db, job_id, attempt, items, offset, written_by)


def _record(db: Database, job_id: str, attempt: int, items: Sequence[TelemetryItem], offset: int | None,
            written_by: int | None) -> None:
    if not items and offset is None:
        return
    metrics = [i for i in items if isinstance(i, MetricIn)]
    logs = [i for i in items if isinstance(i, LogIn)]
    ordered = [i for i in items if isinstance(i, Event | CheckpointIn)]
    read_through = {} if offset is None else {"telemetry_offset": offset, "telemetry_attempt": attempt}
    with db.write() as session:
        job = fence(session, job_id, attempt, log_lines=len(logs), events=len(ordered), values=read_through,
                    shown=bool(items))
        _insert_metrics(session, job, metrics, written_by)
        _insert_logs(session, job_id, job.log_seq - len(logs) + 1, logs, written_by)
        seq, top = job.event_seq - len(ordered), job.last_checkpoint_step
        for item in ordered:
            seq += 1
            if isinstance(item, Event):
                write_event(session, job_id, seq, _marked(item, written_by))
            else:
                _insert_checkpoint(session, job_id, seq, item, written_by)
                top = max(item.step, top if top is not None else -1)
        if top != job.last_checkpoint_step:
            session.execute(update(Job).where(Job.id == job_id).values(last_checkpoint_step=top)
                            .execution_options(synchronize_session=False))


def _marked(event: Event, written_by: int | None) -> Event:
    """The event with the attempt whose runner reported it in its data."""
    if written_by is None:
        return event
    return Event(event.type, event.message, {**(event.data or {}), "attempt": written_by})


def record_metrics(db: Database, job_id: str, attempt: int, points: Sequence[MetricIn]) -> None:
    """Store metric points (a step already stored is kept as is) and move the job's progress."""
    record_telemetry(db, job_id, attempt, points)


def append_logs(db: Database, job_id: str, attempt: int, lines: Sequence[LogIn]) -> list[int]:
    """Append log lines; returns their seq numbers, monotonic per job across attempts."""
    if not lines:
        return []
    with db.write() as session:
        job = fence(session, job_id, attempt, log_lines=len(lines))
        first = job.log_seq - len(lines) + 1
        _insert_logs(session, job_id, first, lines, attempt)
        return list(range(first, first + len(lines)))


def add_event(db: Database, job_id: str, attempt: int, event: Event) -> None:
    """A worker's event (phase change, warning…)."""
    record_telemetry(db, job_id, attempt, [event])


def add_checkpoint(
    db: Database, job_id: str, attempt: int, step: int, path: str, metrics: dict[str, Any] | None = None
) -> Checkpoint:
    """Record a committed checkpoint (its manifest exists); the same step twice returns the first."""
    record_telemetry(db, job_id, attempt, [CheckpointIn(step, path, metrics or {})])
    with db.read() as session:
        stmt = select(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step == step)
        return session.execute(stmt).scalar_one()


def _insert_metrics(session: Session, job: Job, points: Sequence[MetricIn], written_by: int | None) -> None:
    rows = [{"job_id": job.id, "kind": p.kind, "step": p.step, "epoch": p.epoch, "phase": p.phase,
             "values": p.values, "ts": p.ts, "attempt": written_by} for p in points]
    insert_ignoring_duplicates(session, MetricPoint, rows, ("job_id", "kind", "step"))
    train = [p for p in points if p.kind == "train"]
    if train:
        latest = max(train, key=lambda p: p.step)
        if latest.step >= job.progress.get("step", -1):
            merged = {"step": latest.step, "epoch": latest.epoch, **latest.values}
            progress = {k: merged[k] for k in PROGRESS_KEYS if merged.get(k) is not None}
            session.execute(update(Job).where(Job.id == job.id).values(progress=progress)
                            .execution_options(synchronize_session=False))


_INSERT_LOG = insert(LogLine)


def _insert_logs(session: Session, job_id: str, first_seq: int, lines: Sequence[LogIn],
                 written_by: int | None) -> None:
    if lines:
        rows = [{"job_id": job_id, "seq": seq, "level": line.level, "message": line.message, "ts": line.ts,
                 "attempt": written_by} for seq, line in enumerate(lines, start=first_seq)]
        session.connection().execute(_INSERT_LOG, rows)


def _insert_checkpoint(session: Session, job_id: str, seq: int, ckpt: CheckpointIn, written_by: int | None) -> None:
    if ckpt.pruned:  # their folders are gone: listing them would offer ids nothing can resume from
        session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.step.in_(ckpt.pruned))
                        .execution_options(synchronize_session=False))
    insert_ignoring_duplicates(
        session, Checkpoint,
        [{"id": new_id("ckpt"), "job_id": job_id, "step": ckpt.step, "path": ckpt.path,
          "metrics": ckpt.metrics, "created_at": utcnow(), "attempt": written_by}],
        ("job_id", "step"),
    )
    ckpt_id = session.scalar(select(Checkpoint.id).where(Checkpoint.job_id == job_id, Checkpoint.step == ckpt.step))
    write_event(session, job_id, seq, _marked(Event("checkpoint", f"checkpoint at step {ckpt.step}",
                                                    {"step": ckpt.step, "checkpoint_id": ckpt_id}), written_by))


def latest_checkpoint_id(session: Session, job_id: str) -> str | None:
    """The id of the job's checkpoint at the highest step, if any."""
    stmt = select(Checkpoint.id).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step.desc()).limit(1)
    found: str | None = session.scalar(stmt)
    return found


def read_events(session: Session, job_id: str, since: int = 0, limit: int = 1000) -> list[JobEvent]:
    """Events with seq > since, oldest first."""
    stmt = (
        select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > since)
        .order_by(JobEvent.seq).limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """A stored metric point, read as plain columns: a dashboard's first read of a long run is
    thousands of them, and ORM objects cost several times as much to build."""

    step: int
    kind: str
    epoch: float | None
    phase: str | None
    values: dict[str, Any]
    ts: datetime


_METRIC_COLUMNS = (MetricPoint.step, MetricPoint.kind, MetricPoint.epoch, MetricPoint.phase, MetricPoint.values,
                   MetricPoint.ts)


def read_metrics(
    session: Session, job_id: str, since_step: int = -1, kind: str | None = None, limit: int = 10_000
) -> list[MetricRecord]:
    """Metric points with step > since_step, by step then kind."""
    values = {"job_id": job_id, "since_step": since_step, "limit": limit}
    if kind is None:
        rows = session.execute(_METRICS, values)
    else:
        rows = session.execute(_METRICS_OF_KIND, {**values, "kind": kind})
    return [MetricRecord(*row) for row in rows]


def _metrics_statement(*also: Any) -> Any:
    """Built once a process (every poll of a dashboard runs one), the values bound at execution."""
    return (select(*_METRIC_COLUMNS)
            .where(MetricPoint.job_id == bindparam("job_id"), MetricPoint.step > bindparam("since_step"), *also)
            .order_by(MetricPoint.step, MetricPoint.kind).limit(bindparam("limit")))


_METRICS = _metrics_statement()
_METRICS_OF_KIND = _metrics_statement(MetricPoint.kind == bindparam("kind"))


def train_point_time(session: Session, job_id: str, step: int) -> datetime | None:
    """When the runner reported the train point of `step` (one row, by its key), None without one."""
    stmt = select(MetricPoint.ts).where(MetricPoint.job_id == job_id, MetricPoint.kind == "train",
                                        MetricPoint.step == step)
    found: datetime | None = session.scalar(stmt)
    return found


@dataclass(frozen=True, slots=True)
class LogRecord:
    """A stored log line, read as plain columns (as `MetricRecord`: a first read is thousands)."""

    seq: int
    level: str
    message: str
    ts: datetime


_LOG_COLUMNS = select(LogLine.seq, LogLine.level, LogLine.message, LogLine.ts).where(
    LogLine.job_id == bindparam("job_id"), LogLine.seq > bindparam("since"))
_LOGS = _LOG_COLUMNS.order_by(LogLine.seq).limit(bindparam("limit"))
_NEWEST_LOGS = _LOG_COLUMNS.order_by(LogLine.seq.desc()).limit(bindparam("limit"))


def read_logs(session: Session, job_id: str, since: int = 0, tail: int | None = None,
              limit: int = 10_000) -> list[LogRecord]:
    """Log lines with seq > since, oldest first; with `tail`, only the last `tail` of those."""
    values = {"job_id": job_id, "since": since}
    if tail is not None:
        newest = [LogRecord(*row) for row in session.execute(_NEWEST_LOGS, {**values, "limit": min(tail, limit)})]
        return newest[::-1]
    return [LogRecord(*row) for row in session.execute(_LOGS, {**values, "limit": limit})]


def read_checkpoints(session: Session, job_id: str) -> list[Checkpoint]:
    return list(session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.step)))


# The same reads, each in a transaction of its own.

def list_events(db: Database, job_id: str, since: int = 0, limit: int = 1000) -> list[JobEvent]:
    with db.read() as session:
        return read_events(session, job_id, since, limit)


def list_metrics(
    db: Database, job_id: str, since_step: int = -1, kind: str | None = None, limit: int = 10_000
) -> list[MetricRecord]:
    with db.read() as session:
        return read_metrics(session, job_id, since_step, kind, limit)


def list_logs(db: Database, job_id: str, since: int = 0, tail: int | None = None,
              limit: int = 10_000) -> list[LogRecord]:
    with db.read() as session:
        return read_logs(session, job_id, since, tail, limit)


def list_checkpoints(db: Database, job_id: str) -> list[Checkpoint]:
    with db.read() as session:
        return read_checkpoints(session, job_id)


def get_checkpoint(db: Database, org_id: str, checkpoint_id: str) -> Checkpoint:
    """A checkpoint of one of the organization's jobs (a checkpoint id is a valid base model)."""
    stmt = select(Checkpoint).join(Job, Job.id == Checkpoint.job_id).where(
        Checkpoint.id == checkpoint_id, Job.org_id == org_id
    )
    with db.read() as session:
        found = session.scalars(stmt).one_or_none()
    if found is None:
        raise NotFound("checkpoint", checkpoint_id)
    return found


def count_log_lines(db: Database, job_id: str) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).where(LogLine.job_id == job_id)) or 0
