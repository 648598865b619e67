"""The job state machine: every status, every allowed change, and the one way to make a change.

A change is a single guarded `UPDATE jobs ... WHERE id = :id AND status IN (:allowed)
[AND attempt = :attempt]` whose row count says whether it happened, plus an event row written in
the same transaction. Nothing reads the status, decides in Python, and writes it back: that races.

Worker writes also carry the attempt (the fencing token handed out by a claim) and are refused
with StaleAttempt once the attempt no longer holds the job: see `fence`.

The named moves built on `transition` (claim, start, finalize, complete, stop, cancel, resume,
release, fail, retry-or-fail, reap) are in tuneyard.store.lifecycle; nothing else moves a job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, insert, select, update
from sqlalchemy.orm import Session

from tuneyard.store.changes import bump
from tuneyard.store.errors import InvalidTransition, NotFound, StaleAttempt
from tuneyard.store.ids import utcnow
from tuneyard.store.tables import Job, JobEvent


class JobStatus(StrEnum):
    QUEUED = "queued"  # waiting for a worker; also where expired leases and resumes come back to
    STARTING = "starting"  # claimed: a worker holds the lease and is starting the runner
    RUNNING = "running"  # the runner is training
    FINALIZING = "finalizing"  # training done; saving the model and running the final eval
    STOPPING = "stopping"  # stop requested: the runner checkpoints at the next step and exits
    STOPPED = "stopped"  # stopped with its checkpoints kept; `resume` queues it again
    CANCELLING = "cancelling"  # cancel requested: the runner is being terminated, then killed
    COMPLETED = "completed"  # finished; the trained model exists (terminal)
    FAILED = "failed"  # gave up, `error` says why; resumable when it has a checkpoint (terminal)
    CANCELLED = "cancelled"  # cancelled by a user (terminal)

    def is_terminal(self) -> bool:
        return self in TERMINAL


S = JobStatus

TERMINAL = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})

# Statuses in which a worker holds the job under a lease. Only these accept a worker's writes,
# and only these can have their lease expire.
HELD = frozenset({S.STARTING, S.RUNNING, S.FINALIZING, S.STOPPING, S.CANCELLING})

# from -> the statuses it may move to. Reaching `queued` from a held status is a lease expiry or
# a worker handing the job back; from stopped/failed it is a user's resume.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    S.QUEUED: frozenset({S.STARTING, S.STOPPED, S.CANCELLED, S.FAILED}),
    S.STARTING: frozenset({S.RUNNING, S.QUEUED, S.STOPPING, S.CANCELLING, S.FAILED}),
    S.RUNNING: frozenset({S.FINALIZING, S.QUEUED, S.STOPPING, S.CANCELLING, S.FAILED}),
    # A stop that arrives while finalizing is refused: the model is nearly saved.
    S.FINALIZING: frozenset({S.COMPLETED, S.QUEUED, S.CANCELLING, S.FAILED}),
    # The runner may finish training before it sees the stop; its verdict wins.
    S.STOPPING: frozenset({S.STOPPED, S.FINALIZING, S.COMPLETED, S.CANCELLING, S.FAILED}),
    S.STOPPED: frozenset({S.QUEUED, S.CANCELLED}),
    S.CANCELLING: frozenset({S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset({S.QUEUED}),
    S.CANCELLED: frozenset(),
}


def allowed_from(target: JobStatus, among: Iterable[JobStatus] | None = None) -> list[str]:
    """The statuses (optionally limited to `among`) from which a job may move to `target`."""
    pool = set(among) if among is not None else set(S)
    return sorted(s.value for s in pool if target in TRANSITIONS[s])


@dataclass(frozen=True)
class Event:
    type: str
    message: str
    data: dict[str, Any] | None = None


def transition(
    session: Session,
    job_id: str,
    target: JobStatus,
    event: Event,
    *,
    attempt: int | None = None,
    only_from: Iterable[JobStatus] | None = None,
    values: dict[str, Any] | None = None,
    where: Iterable[ColumnElement[bool]] = (),
) -> Job:
    """Move the job to `target` and record `event`, or raise without changing anything.

    `attempt` makes it a worker's write (refused with StaleAttempt once stale); `only_from` narrows
    the allowed origins for this request (stop from running but not from queued, say); `values` are
    further columns set by the same UPDATE; `where` adds guards of the caller's own.
    """
    origins = set(only_from) if only_from is not None else set(S)
    if attempt is not None:
        # A worker moves only a job it holds: after the reaper re-queued it, the attempt number is
        # unchanged until the next claim, so the attempt alone would not refuse the old worker.
        origins &= HELD
    conditions = [Job.id == job_id, Job.status.in_(allowed_from(target, origins)), *where]
    if attempt is not None:
        conditions.append(Job.attempt == attempt)
    stmt = (
        update(Job)
        .where(*conditions)
        .values(status=target.value, event_seq=Job.event_seq + 1, **bump(session, job_id), **(values or {}))
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    job = session.execute(stmt).scalar_one_or_none()
    if job is None:
        _explain_refusal(session, job_id, target, attempt)
    assert job is not None
    data = {"status": target.value, **(event.data or {})}
    write_event(session, job_id, job.event_seq, Event(event.type, event.message, data))
    return job


def _explain_refusal(session: Session, job_id: str, target: JobStatus, attempt: int | None) -> None:
    row = session.execute(select(Job.status, Job.attempt).where(Job.id == job_id)).one_or_none()
    if row is None:
        raise NotFound("job", job_id)
    if attempt is not None and (row.attempt != attempt or row.status not in HELD):
        raise StaleAttempt(job_id, attempt, row.attempt, row.status)
    raise InvalidTransition(job_id, row.status, target.value)


def fence(session: Session, job_id: str, attempt: int, *, log_lines: int = 0, events: int = 0,
          values: dict[str, Any] | None = None, shown: bool = True) -> Job:
    """Check that `attempt` still holds the job, and take seq numbers, in one guarded UPDATE.

    The UPDATE also locks the job row until the transaction ends, so a reaper or a user's cancel
    cannot slip in between this check and the caller's writes. Returns the job with its counters
    already advanced: the caller's seqs are (counter - n, counter]. `shown=False` is for a write no
    read of the job shows (a heartbeat's lease): the job's revision stays as it is.
    """
    changes = bump(session, job_id) if shown else {}
    stmt = (
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.status.in_([s.value for s in HELD]))
        .values(log_seq=Job.log_seq + log_lines, event_seq=Job.event_seq + events, **changes, **(values or {}))
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    job = session.execute(stmt).scalar_one_or_none()
    if job is None:
        row = session.execute(select(Job.status, Job.attempt).where(Job.id == job_id)).one_or_none()
        if row is None:
            raise NotFound("job", job_id)
        raise StaleAttempt(job_id, attempt, row.attempt, row.status)
    return job


def next_event_seq(session: Session, job_id: str) -> int:
    """Take the job's next event seq without any fencing (user and platform events)."""
    stmt = (
        update(Job)
        .where(Job.id == job_id)
        .values(event_seq=Job.event_seq + 1, **bump(session, job_id))
        .returning(Job.event_seq)
        .execution_options(synchronize_session=False)
    )
    seq = session.execute(stmt).scalar_one_or_none()
    if seq is None:
        raise NotFound("job", job_id)
    return seq


_INSERT_EVENT = insert(JobEvent)  # a statement, not a connection: built once, shared freely


def write_event(session: Session, job_id: str, seq: int, event: Event) -> None:
    row = {"job_id": job_id, "seq": seq, "type": event.type, "message": event.message,
           "data": event.data or {}, "created_at": utcnow()}
    # Through the connection: the ORM's bulk-insert machinery costs more than the insert itself.
    session.connection().execute(_INSERT_EVENT, row)
