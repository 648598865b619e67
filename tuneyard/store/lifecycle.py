"""Every named move of a job's life, each a guarded update through `status.transition`.

tuneyard.store.status says which changes are allowed and how one is made; this module says what
each move writes, so that rule lives in one place:

    claim             queued → starting         a worker takes the oldest queued job that fits its memory
                                                and device (attempt + 1)
    start             starting → running        the runner is up
    finalize          → finalizing              training is done; the model is being saved
    complete          → completed               with the result and the trained model
    request_stop      → stopping (or stopped)   a user's stop; a queued job stops at once
    finish_stop       stopping → stopped        the runner checkpointed and left
    request_cancel    → cancelling (cancelled)  a user's cancel; a job no worker holds ends at once
    finish_cancel     cancelling → cancelled    the runner is gone
    request_resume    stopped/failed → queued   a user's resume, from a checkpoint
    release           → queued                  a worker shutting down hands the job back, no retry
    fail              → failed                  a verdict not worth retrying
    retry_or_fail     → queued or failed        a platform failure the worker saw
    reap              → queued/failed/stopped/cancelled   leases that expired: their worker is gone

Moves a worker makes carry its attempt, the fencing token a claim hands out, and raise
StaleAttempt once that attempt no longer holds the job. Every move raises InvalidTransition when
the job's status does not allow it. Whether a failed attempt is retried is `retry_decision`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tuneyard.errors import ErrorType
from tuneyard.store.claiming import ClaimedJob as ClaimedJob  # the claim is one of the moves named here
from tuneyard.store.claiming import claim as claim
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, InvalidTransition, NotFound, StaleAttempt
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.quotas import NO_QUOTAS, Quotas, check_active_jobs
from tuneyard.store.status import HELD, Event, JobStatus, fence, transition
from tuneyard.store.tables import Checkpoint, Job, TrainedModel
from tuneyard.store.telemetry import latest_checkpoint_id

S = JobStatus

# The held statuses a job goes back to the queue from when its worker lets go of it unasked:
# a job stopping or cancelling is on its way out instead, and ends as the user asked.
WORKING = (S.STARTING, S.RUNNING, S.FINALIZING)


def _let_go(**values: Any) -> dict[str, Any]:
    """The columns of a move by which the worker lets go of the job, plus the move's own.

    A job that ends, goes back to the queue or is resumed has no worker and no lease: the reaper
    must never find it, and only the next claim may give it a worker again.
    """
    return {"worker_id": None, "lease_expires_at": None, **values}


# ---- the retry decision -------------------------------------------------------------------------


def retry_decision(retries: int, max_retries: int) -> JobStatus:
    """QUEUED to try again, FAILED to give up: the one rule for an expired lease and a failed runner.

    `retries` counts the attempts already retried, so a job runs at most 1 + max_retries times.
    """
    return S.QUEUED if retries < max_retries else S.FAILED


def _retry_values(session: Session, job_id: str, retries: int) -> dict[str, Any]:
    # Counted, and resumed from the latest durable checkpoint by whichever worker claims it next.
    return _let_go(retries=retries + 1, resume_from=latest_checkpoint_id(session, job_id))


def _failed_values(error_type: str, message: str, details: dict[str, Any] | None, now: datetime) -> dict[str, Any]:
    error = {"error_type": error_type, "message": message, **({"details": details} if details else {})}
    return _let_go(error=error, finished_at=now)


def _gave_up(message: str, retries: int) -> str:
    return f"{message}; gave up after {retries} retries"


# ---- the worker's moves, fenced by its attempt ------------------------------------------------------


@dataclass(frozen=True)
class NewTrainedModel:
    kind: str  # adapter | full
    path: str
    base_model: str
    datasets: list[Any] = field(default_factory=list)  # lineage: the dataset ids it was trained on
    meta: dict[str, Any] = field(default_factory=dict)


def start(db: Database, job_id: str, attempt: int) -> Job:
    with db.write() as session:
        return transition(session, job_id, S.RUNNING, Event("running", "runner started"), attempt=attempt)


def finalize(db: Database, job_id: str, attempt: int) -> Job:
    with db.write() as session:
        return transition(session, job_id, S.FINALIZING, Event("finalizing", "saving the model"), attempt=attempt)


def complete(
    db: Database, job_id: str, attempt: int, result: dict[str, Any], model: NewTrainedModel | None = None
) -> Job:
    """Record the result (and the trained model, with its lineage) and complete the job."""
    model_id = new_id("model") if model is not None else None
    values = _let_go(result=result, output_model_id=model_id, finished_at=utcnow())
    event = Event("completed", "job completed", {"output_model_id": model_id})
    with db.write() as session:
        job = transition(session, job_id, S.COMPLETED, event, attempt=attempt, values=values)
        if model is not None:
            session.execute(insert(TrainedModel).values(
                id=model_id, org_id=job.org_id, job_id=job_id, base_model=model.base_model,
                datasets=model.datasets, kind=model.kind, path=model.path, meta=model.meta,
            ))
        return job


def finish_stop(db: Database, job_id: str, attempt: int, checkpoint_step: int | None = None) -> Job:
    """The runner stopped gracefully after a stop request; its checkpoints are kept."""
    event = Event("stopped", f"stopped at step {checkpoint_step}", {"checkpoint_step": checkpoint_step})
    with db.write() as session:
        return transition(session, job_id, S.STOPPED, event, attempt=attempt, values=_let_go())


def finish_cancel(db: Database, job_id: str, attempt: int) -> Job:
    with db.write() as session:
        return transition(session, job_id, S.CANCELLED, Event("cancelled", "runner terminated"),
                          attempt=attempt, values=_let_go(finished_at=utcnow()))


def fail(db: Database, job_id: str, error_type: str, message: str, *, attempt: int | None = None,
         details: dict[str, Any] | None = None) -> Job:
    """Fail the job for good (a user error, or a platform error not worth retrying).

    With `attempt` it is the worker's verdict and fenced; without, the platform's (e.g. a job
    whose dataset turned out invalid before any worker took it).
    """
    values = _failed_values(error_type, message, details, utcnow())
    with db.write() as session:
        return transition(session, job_id, S.FAILED, Event("failed", message, {"error_type": error_type}),
                          attempt=attempt, values=values)


def release(db: Database, job_id: str, attempt: int, reason: str) -> None:
    """Hand a held job back to the queue without counting a retry (a worker shutting down).

    It resumes from its latest checkpoint. A job already stopping or cancelling is not released:
    its runner is on the way out and the worker records how it ended.
    """
    with db.write() as session:
        transition(
            session, job_id, S.QUEUED, Event("released", f"handed back to the queue: {reason}", {"reason": reason}),
            attempt=attempt, only_from=WORKING, values=_let_go(resume_from=latest_checkpoint_id(session, job_id)),
        )


def retry_or_fail(
    db: Database, job_id: str, attempt: int, error_type: str, message: str, details: dict[str, Any] | None = None
) -> JobStatus:
    """The runner failed for a reason of the platform's (killed, crashed, exited without a verdict).

    By `retry_decision`: back to the queue, counted, or failed once the retries are spent.
    Returns the new status.
    """
    with db.write() as session:
        # Locks the row first, so the retries decided on are the ones the move overwrites.
        job = fence(session, job_id, attempt)
        data = {"reason": error_type, "attempt": attempt, **({"details": details} if details else {})}
        if retry_decision(job.retries, job.max_retries) is S.FAILED:
            final = _gave_up(message, job.retries)
            transition(session, job_id, S.FAILED, Event("failed", final, data), attempt=attempt,
                       values=_failed_values(error_type, final, details, utcnow()))
            return S.FAILED
        transition(session, job_id, S.QUEUED, Event("retrying", f"attempt {attempt} failed: {message}", data),
                   attempt=attempt, only_from=WORKING, values=_retry_values(session, job_id, job.retries))
        return S.QUEUED


# ---- the reaper: leases that expired ---------------------------------------------------------------


@dataclass(frozen=True)
class ReapedJob:
    job_id: str
    attempt: int
    worker_id: str | None
    new_status: str


def reap(db: Database, *, now: datetime | None = None, limit: int = 100) -> list[ReapedJob]:
    """Settle up to `limit` held jobs whose lease expired before `now`; returns what it did.

    Their worker is gone. A job being stopped becomes stopped (its checkpoints kept), one being
    cancelled becomes cancelled; any other goes back to the queue or fails with platform_error,
    by `retry_decision`. Each job is reaped in its own transaction, guarded on its attempt, its
    retries and the expired lease, so a heartbeat that lands first wins and two reapers never
    reap the same job twice.
    """
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
    event = Event("lease_expired", why, {"reason": "lease_expired", "attempt": attempt, "worker_id": worker_id})
    try:
        with db.write() as session:
            if status in (S.STOPPING, S.CANCELLING):
                target = S.STOPPED if status is S.STOPPING else S.CANCELLED
                values = _let_go(finished_at=now)
            elif (target := retry_decision(retries, max_retries)) is S.QUEUED:
                values = _retry_values(session, job_id, retries)
            else:
                values = _failed_values(ErrorType.PLATFORM_ERROR, _gave_up(why, retries), None, now)
            transition(session, job_id, target, event, attempt=attempt, only_from=(status,), values=values,
                       where=[Job.lease_expires_at < now, Job.retries == retries])
    except (StaleAttempt, InvalidTransition):
        return None  # a heartbeat, the worker or another reaper got there first
    return target


# ---- a user's requests ------------------------------------------------------------------------------


def _check_owner(session: Session, org_id: str, job_id: str) -> None:
    # Another organization's job is as missing as one that never existed: ids leak nothing.
    # The row stays locked to the end of the user's request: on PostgreSQL each statement sees what others
    # committed, so a worker's claim (which skips locked rows) could move a job from queued to starting
    # between a request's two guarded updates (queued → stopped refused, then "starting: cannot be stopped").
    owned = select(Job.id).where(Job.id == job_id, Job.org_id == org_id).with_for_update()
    if session.scalar(owned) is None:
        raise NotFound("job", job_id)


def request_stop(db: Database, org_id: str, job_id: str) -> Job:
    """Stop gracefully: a running job checkpoints and becomes stopped; a queued one stops at once."""
    event = Event("stop_requested", "stop requested")
    with db.write() as session:
        _check_owner(session, org_id, job_id)
        try:
            return transition(session, job_id, S.STOPPING, event, only_from=(S.STARTING, S.RUNNING),
                              values={"stop_requested": True})
        except InvalidTransition as refused:
            if refused.current != S.QUEUED.value:
                raise
        return transition(session, job_id, S.STOPPED, event, only_from=(S.QUEUED,),
                          values={"stop_requested": True})


def request_cancel(db: Database, org_id: str, job_id: str) -> Job:
    """Cancel: a job no worker holds is cancelled at once; a held one is terminated first."""
    event = Event("cancel_requested", "cancel requested")
    with db.write() as session:
        _check_owner(session, org_id, job_id)
        try:
            return transition(session, job_id, S.CANCELLED, event, only_from=(S.QUEUED, S.STOPPED),
                              values={"cancel_requested": True, "finished_at": utcnow()})
        except InvalidTransition as refused:
            if refused.current not in HELD:
                raise
        return transition(session, job_id, S.CANCELLING, event, values={"cancel_requested": True})


def request_resume(db: Database, org_id: str, job_id: str, checkpoint_id: str | None = None,
                   quotas: Quotas = NO_QUOTAS) -> Job:
    """Queue a stopped job (or a failed one that has a checkpoint) again, under the same id.

    Back in the queue it counts against the organization's active-jobs quota again, so a resume
    is refused by the quota (429) as a new job would be, in the same transaction as the move.
    """
    with db.write() as session:
        _check_owner(session, org_id, job_id)
        resume_from = _resume_point(session, job_id, checkpoint_id)
        current = session.get(Job, job_id)
        if current is not None and current.status in (S.STOPPED.value, S.FAILED.value):
            check_active_jobs(session, org_id, quotas)  # other states are refused by transition() below
        # A fresh start for the bookkeeping: no pending requests, no error, the retries counted anew.
        values = _let_go(resume_from=resume_from, stop_requested=False, cancel_requested=False, error=None,
                         finished_at=None, retries=0)
        event = Event("resumed", f"resumed from {resume_from or 'the start'}", {"checkpoint_id": resume_from})
        job = session.get(Job, job_id)
        if job is not None and job.status == S.FAILED.value and resume_from is None:
            raise Conflict(f"job {job_id} failed without a checkpoint; there is nothing to resume from",
                           current_status=job.status)
        return transition(session, job_id, S.QUEUED, event, only_from=(S.STOPPED, S.FAILED), values=values)


def _resume_point(session: Session, job_id: str, checkpoint_id: str | None) -> str | None:
    if checkpoint_id is None:
        return latest_checkpoint_id(session, job_id)
    found = session.scalar(select(Checkpoint.id).where(Checkpoint.id == checkpoint_id, Checkpoint.job_id == job_id))
    if found is None:
        raise NotFound("checkpoint", checkpoint_id)
    return found
