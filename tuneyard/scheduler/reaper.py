"""The reaper: jobs whose lease expired belong to a worker that is gone.

A held job whose lease ran out goes back to the queue to resume from its latest checkpoint,
counted in `retries`; past `max_retries` it fails with `platform_error`. A job whose user had asked
it to stop becomes `stopped` (its checkpoints are kept), one being cancelled becomes `cancelled`.
Each job is reaped in its own transaction, guarded on the attempt and the expired lease, so a
heartbeat that lands first wins and two reapers never reap the same job twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from tuneyard.store.engine import Database
from tuneyard.store.errors import InvalidTransition, StaleAttempt
from tuneyard.store.ids import utcnow
from tuneyard.store.status import HELD, Event, JobStatus, transition
from tuneyard.store.tables import Job
from tuneyard.store.telemetry import latest_checkpoint_id

PLATFORM_ERROR = "platform_error"


@dataclass(frozen=True)
class ReapedJob:
    job_id: str
    attempt: int
    worker_id: str | None
    new_status: str


def reap(db: Database, *, now: datetime | None = None, limit: int = 100) -> list[ReapedJob]:
    """Deal with up to `limit` jobs whose lease expired before `now`; returns what it did."""
    now = now or utcnow()
    stmt = (
        select(Job.id, Job.attempt, Job.worker_id, Job.status, Job.retries, Job.max_retries)
        .where(Job.status.in_([s.value for s in HELD]), Job.lease_expires_at < now)
        .order_by(Job.lease_expires_at)
        .limit(limit)
    )
    with db.read() as session:
        expired = session.execute(stmt).all()
    reaped = []
    for row in expired:
        target = _reap_one(db, row.id, row.attempt, row.worker_id, JobStatus(row.status),
                           row.retries, row.max_retries, now)
        if target is not None:
            reaped.append(ReapedJob(row.id, row.attempt, row.worker_id, target.value))
    return reaped


def _reap_one(
    db: Database, job_id: str, attempt: int, worker_id: str | None, status: JobStatus,
    retries: int, max_retries: int, now: datetime,
) -> JobStatus | None:
    why = f"lease of attempt {attempt} expired (worker {worker_id} stopped heartbeating)"
    data = {"reason": "lease_expired", "attempt": attempt, "worker_id": worker_id}
    released: dict[str, Any] = {"worker_id": None, "lease_expires_at": None}
    guards = [Job.lease_expires_at < now, Job.retries == retries]
    if status is JobStatus.STOPPING:
        target, values = JobStatus.STOPPED, {**released, "finished_at": now}
    elif status is JobStatus.CANCELLING:
        target, values = JobStatus.CANCELLED, {**released, "finished_at": now}
    elif retries >= max_retries:
        error = {"error_type": PLATFORM_ERROR, "message": f"{why}; gave up after {retries} retries"}
        target, values = JobStatus.FAILED, {**released, "error": error, "finished_at": now}
    else:
        target, values = JobStatus.QUEUED, {**released, "retries": retries + 1}
    try:
        with db.write() as session:
            if target is JobStatus.QUEUED:
                values["resume_from"] = latest_checkpoint_id(session, job_id)
            transition(session, job_id, target, Event("lease_expired", why, data),
                       attempt=attempt, only_from=(status,), values=values, where=guards)
    except (StaleAttempt, InvalidTransition):
        return None  # a heartbeat, the worker or another reaper got there first
    return target
