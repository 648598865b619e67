"""The durable queue: claim the oldest queued job under a lease, keep the lease, hand it back.

A claim is one UPDATE whose subquery picks the oldest queued job. On PostgreSQL the subquery
locks that row with FOR UPDATE SKIP LOCKED, so concurrent claimers each take a different job
instead of queueing on the same one; on SQLite the write transaction begins IMMEDIATE, so claims
are serialized by the database lock. Either way a job is claimed once per attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Update, and_, bindparam, func, or_, select, update

from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.ids import utcnow
from tuneyard.store.status import Event, JobStatus, allowed_from, fence, transition, write_event
from tuneyard.store.tables import Checkpoint, Job, UTCDateTime
from tuneyard.store.telemetry import latest_checkpoint_id


@dataclass(frozen=True)
class ClaimedJob:
    """What a worker needs to run a job; `attempt` must accompany every write it makes."""

    job_id: str
    org_id: str
    attempt: int
    type: str
    config: dict[str, Any]
    lease_expires_at: datetime
    retries: int
    resume_from: str | None  # a checkpoint id, when resuming
    resume_path: str | None  # that checkpoint's path


@dataclass(frozen=True)
class Lease:
    """A heartbeat's answer: the new expiry, and what a user has asked of the job meanwhile."""

    expires_at: datetime
    status: str
    stop_requested: bool
    cancel_requested: bool


@cache
def _claim_statement() -> Update:
    """Built once: claims are the hot path, and statement construction costs more than SQLite."""
    oldest = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED.value)
        .order_by(Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(Job)
        .where(Job.id == oldest, Job.status.in_(allowed_from(JobStatus.STARTING)))
        .values(
            status=JobStatus.STARTING.value,
            attempt=Job.attempt + 1,
            worker_id=bindparam("worker_id"),
            lease_expires_at=bindparam("expires", type_=UTCDateTime()),
            started_at=func.coalesce(Job.started_at, bindparam("now", type_=UTCDateTime())),
            event_seq=Job.event_seq + 1,
        )
        .returning(Job.id, Job.org_id, Job.attempt, Job.type, Job.config, Job.retries, Job.resume_from,
                   Job.event_seq)
    )


def claim(db: Database, worker_id: str, lease_seconds: float, *, now: datetime | None = None) -> ClaimedJob | None:
    """Take the oldest queued job for `worker_id`, or None when the queue is empty."""
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    with db.write() as session:
        params = {"worker_id": worker_id, "expires": expires, "now": now}
        job = session.connection().execute(_claim_statement(), params).one_or_none()
        if job is None:
            return None
        data = {"status": JobStatus.STARTING.value, "worker_id": worker_id, "attempt": job.attempt}
        write_event(session, job.id, job.event_seq, Event("claimed", f"claimed by {worker_id}", data))
        path = None
        if job.resume_from:
            path = session.scalar(select(Checkpoint.path).where(Checkpoint.id == job.resume_from))
        return ClaimedJob(
            job_id=job.id, org_id=job.org_id, attempt=job.attempt, type=job.type, config=job.config,
            lease_expires_at=expires, retries=job.retries, resume_from=job.resume_from, resume_path=path,
        )


def heartbeat(
    db: Database, job_id: str, attempt: int, lease_seconds: float, *, now: datetime | None = None
) -> Lease:
    """Extend the lease; raises StaleAttempt when `attempt` no longer holds the job."""
    expires = (now or utcnow()) + timedelta(seconds=lease_seconds)
    with db.write() as session:
        job = fence(session, job_id, attempt, values={"lease_expires_at": expires})
        return Lease(expires, job.status, job.stop_requested, job.cancel_requested)


def release(db: Database, job_id: str, attempt: int, reason: str) -> None:
    """Hand a held job back to the queue without counting a retry (a worker shutting down).

    It resumes from its latest checkpoint. A job already stopping or cancelling is not released:
    its runner is on the way out and the worker records how it ended.
    """
    with db.write() as session:
        latest = latest_checkpoint_id(session, job_id)
        transition(
            session, job_id, JobStatus.QUEUED,
            Event("released", f"handed back to the queue: {reason}", {"reason": reason}),
            attempt=attempt,
            only_from=(JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINALIZING),
            values={"worker_id": None, "lease_expires_at": None, "resume_from": latest},
        )


def queue_depth(db: Database) -> int:
    """Jobs waiting for a worker, across every organization (workers serve them all)."""
    with db.read() as session:
        return session.scalar(select(func.count()).where(Job.status == JobStatus.QUEUED.value)) or 0


def queue_position(db: Database, job_id: str) -> int | None:
    """1 for the next job a worker will claim; None when the job is not queued."""
    with db.read() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound("job", job_id)
        if job.status != JobStatus.QUEUED.value:
            return None
        ahead = select(func.count()).where(
            Job.status == JobStatus.QUEUED.value,
            or_(Job.created_at < job.created_at, and_(Job.created_at == job.created_at, Job.id < job.id)),
        )
        return (session.scalar(ahead) or 0) + 1
