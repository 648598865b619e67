"""The durable queue between moves: a held job's lease kept alive, and where queued jobs stand.

Taking a job (claim) and letting it go (release, the reaper) are moves of a job's life and live
in tuneyard.store.lifecycle; `claim` here only says which device a claimer that named none trains
on. A heartbeat changes no status, only how long the lease lasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Select, and_, bindparam, func, or_, select
from sqlalchemy.orm import Session, aliased

from tuneyard.planning.memory import Device
from tuneyard.scheduler.capacity import host_device
from tuneyard.store import lifecycle
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.ids import utcnow
from tuneyard.store.status import JobStatus, fence
from tuneyard.store.tables import Job


@dataclass(frozen=True)
class Lease:
    """A heartbeat's answer: the new expiry, and what a user has asked of the job meanwhile."""

    expires_at: datetime
    status: str
    stop_requested: bool
    cancel_requested: bool


def claim(db: Database, worker_id: str, lease_seconds: float, *, memory_bytes: int | None = None,
          device: Device | None = None, now: datetime | None = None) -> lifecycle.ClaimedJob | None:
    """`lifecycle.claim` for a worker of `device`; one that declared none trains on this host's device
    (the rule `services/devices.py` answers 003's `backend` by), so a CPU-only host never takes a job
    that requires cuda."""
    return lifecycle.claim(db, worker_id, lease_seconds, device=device or host_device(), memory_bytes=memory_bytes,
                           now=now)


def heartbeat(
    db: Database, job_id: str, attempt: int, lease_seconds: float, *, now: datetime | None = None
) -> Lease:
    """Extend the lease; raises StaleAttempt when `attempt` no longer holds the job."""
    expires = (now or utcnow()) + timedelta(seconds=lease_seconds)
    with db.write() as session:
        job = fence(session, job_id, attempt, values={"lease_expires_at": expires}, shown=False)
        return Lease(expires, job.status, job.stop_requested, job.cancel_requested)


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


def queue_positions(session: Session, job_ids: Sequence[str]) -> dict[str, int]:
    """`queue_position` of each of these jobs that is queued, in one statement (a list shows many)."""
    if not job_ids:
        return {}
    found = session.execute(_positions_statement(), {"ids": list(job_ids)})
    return {job_id: before + 1 for job_id, before in found}


@cache
def _positions_statement() -> Select[str, int]:
    """Built once: the console's jobs list asks every poll, and building it (an alias of the whole table)
    cost several times what SQLite takes to answer it."""
    ahead = aliased(Job)
    count = select(func.count()).where(
        ahead.status == JobStatus.QUEUED.value,
        or_(ahead.created_at < Job.created_at, and_(ahead.created_at == Job.created_at, ahead.id < Job.id)),
    ).scalar_subquery()
    return select(Job.id, count).where(Job.id.in_(bindparam("ids", expanding=True)),
                                       Job.status == JobStatus.QUEUED.value)
