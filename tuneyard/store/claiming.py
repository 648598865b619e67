"""The claim, a job's first move: queued → starting, the oldest queued job that fits the claiming
worker's memory and device, with a new attempt (the fencing token every later write of the worker
carries). One of the moves `lifecycle` names, apart because it is the queue's hot path and a
statement of its own; `lifecycle.claim` is this function."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import BigInteger, Update, bindparam, func, or_, select, update

from tuneyard.store.changes import touched
from tuneyard.store.engine import Database
from tuneyard.store.ids import utcnow
from tuneyard.store.status import Event, JobStatus, allowed_from, write_event
from tuneyard.store.tables import Checkpoint, Job, UTCDateTime

S = JobStatus


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
    telemetry_offset: int | None = 0
    """Bytes of the run's telemetry.jsonl already stored; None for a job from before this was kept."""
    telemetry_attempt: int | None = None
    """The attempt whose runner wrote what lies past `telemetry_offset` (None: none yet, or unknown)."""
    memory_estimate_bytes: int | None = None
    """The job's peak memory estimate, which admission compared with the worker's; an executor that
    places runners on a cluster (ray) asks it of the node."""


UNLIMITED_MEMORY = 2**62
"""What a claim without a memory figure compares estimates with: every estimate fits (and the
bound parameter stays an integer, which a NULL comparison would not)."""


@cache
def _claim_statement() -> Update:
    """Built once: claims are the hot path, and statement construction costs more than SQLite.

    One UPDATE whose subquery picks the oldest queued job that fits the worker's memory and requires
    no device or the worker's. On
    PostgreSQL the subquery locks that row with FOR UPDATE SKIP LOCKED, so concurrent claimers
    each take a different job instead of queueing on the same one; on SQLite the write transaction
    begins IMMEDIATE, so claims are serialized by the database lock. Either way a job is claimed
    once per attempt.
    """
    memory = bindparam("memory", type_=BigInteger())
    fits = or_(Job.memory_estimate_bytes.is_(None), Job.memory_estimate_bytes <= memory)
    runs_here = or_(Job.required_device.is_(None), Job.required_device == bindparam("device"))
    oldest = (
        select(Job.id)
        .where(Job.status == S.QUEUED.value, fits, runs_here)
        .order_by(Job.created_at, Job.id)
        .limit(1)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    return (
        update(Job)
        .where(Job.id == oldest, Job.status.in_(allowed_from(S.STARTING)))
        .values(
            status=S.STARTING.value,
            attempt=Job.attempt + 1,
            worker_id=bindparam("worker_id"),
            lease_expires_at=bindparam("expires", type_=UTCDateTime()),
            started_at=func.coalesce(Job.started_at, bindparam("now", type_=UTCDateTime())),
            event_seq=Job.event_seq + 1,
            revision=Job.revision + 1,  # the job is known only after: claim() marks it `touched`
        )
        .returning(Job.id, Job.org_id, Job.attempt, Job.type, Job.config, Job.retries, Job.resume_from,
                   Job.event_seq, Job.telemetry_offset, Job.telemetry_attempt, Job.memory_estimate_bytes)
    )


def claim(db: Database, worker_id: str, lease_seconds: float, *, device: str, memory_bytes: int | None = None,
          now: datetime | None = None) -> ClaimedJob | None:
    """Take the oldest queued job for `worker_id`, which trains on `device` (cpu | cuda), that fits in
    `memory_bytes` (None: any size), or None.

    A job whose memory estimate is larger, or that requires another device, is passed over and stays
    queued for a worker it fits; the jobs behind it are not held up by it. (The worker loop claims
    through `tuneyard.scheduler.claim`, which knows this host's device when a worker names none.)
    """
    now = now or utcnow()
    expires = now + timedelta(seconds=lease_seconds)
    memory = UNLIMITED_MEMORY if memory_bytes is None else memory_bytes
    with db.write() as session:
        params = {"worker_id": worker_id, "expires": expires, "now": now, "memory": memory, "device": device}
        job = session.connection().execute(_claim_statement(), params).one_or_none()
        if job is None:
            return None
        touched(session, job.id)
        data = {"status": S.STARTING.value, "worker_id": worker_id, "attempt": job.attempt}
        write_event(session, job.id, job.event_seq, Event("claimed", f"claimed by {worker_id}", data))
        path = None
        if job.resume_from:
            path = session.scalar(select(Checkpoint.path).where(Checkpoint.id == job.resume_from))
        return ClaimedJob(
            job_id=job.id, org_id=job.org_id, attempt=job.attempt, type=job.type, config=job.config,
            lease_expires_at=expires, retries=job.retries, resume_from=job.resume_from, resume_path=path,
            telemetry_offset=job.telemetry_offset, telemetry_attempt=job.telemetry_attempt,
            memory_estimate_bytes=job.memory_estimate_bytes,
        )
