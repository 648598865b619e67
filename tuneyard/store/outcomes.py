"""How a held job moves on: the worker's status changes, each fenced by its attempt.

These are the only ways a worker changes a job's status (besides claim, heartbeat and release in
tuneyard.scheduler). Each raises StaleAttempt once the attempt no longer holds the job, and
InvalidTransition when the move is not allowed from the job's current status.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert

from tuneyard.store.engine import Database
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.status import Event, JobStatus, transition
from tuneyard.store.tables import Job, TrainedModel

S = JobStatus
# A job that is over no longer has a worker or a lease.
_LET_GO: dict[str, Any] = {"worker_id": None, "lease_expires_at": None}


@dataclass(frozen=True)
class NewTrainedModel:
    kind: str  # adapter | full
    path: str
    base_model: str
    datasets: list[Any] = field(default_factory=list)  # lineage: the dataset ids it was trained on
    meta: dict[str, Any] = field(default_factory=dict)


def mark_running(db: Database, job_id: str, attempt: int) -> Job:
    with db.write() as session:
        return transition(session, job_id, S.RUNNING, Event("running", "runner started"), attempt=attempt)


def mark_finalizing(db: Database, job_id: str, attempt: int) -> Job:
    with db.write() as session:
        return transition(session, job_id, S.FINALIZING, Event("finalizing", "saving the model"), attempt=attempt)


def mark_stopped(db: Database, job_id: str, attempt: int, checkpoint_step: int | None = None) -> Job:
    """The runner stopped gracefully after a stop request; its checkpoints are kept."""
    event = Event("stopped", f"stopped at step {checkpoint_step}", {"checkpoint_step": checkpoint_step})
    with db.write() as session:
        return transition(session, job_id, S.STOPPED, event, attempt=attempt, values=dict(_LET_GO))


def mark_cancelled(db: Database, job_id: str, attempt: int) -> Job:
    values = {**_LET_GO, "finished_at": utcnow()}
    with db.write() as session:
        return transition(session, job_id, S.CANCELLED, Event("cancelled", "runner terminated"),
                          attempt=attempt, values=values)


def complete(
    db: Database, job_id: str, attempt: int, result: dict[str, Any], model: NewTrainedModel | None = None
) -> Job:
    """Record the result (and the trained model, with its lineage) and complete the job."""
    model_id = new_id("model") if model is not None else None
    values = {**_LET_GO, "result": result, "output_model_id": model_id, "finished_at": utcnow()}
    event = Event("completed", "job completed", {"output_model_id": model_id})
    with db.write() as session:
        job = transition(session, job_id, S.COMPLETED, event, attempt=attempt, values=values)
        if model is not None:
            session.execute(insert(TrainedModel).values(
                id=model_id, org_id=job.org_id, job_id=job_id, base_model=model.base_model,
                datasets=model.datasets, kind=model.kind, path=model.path, meta=model.meta,
            ))
        return job


def fail(db: Database, job_id: str, error_type: str, message: str, *, attempt: int | None = None,
         details: dict[str, Any] | None = None) -> Job:
    """Fail the job for good (a user error, or a platform error not worth retrying).

    With `attempt` it is the worker's verdict and fenced; without, the platform's (e.g. a job
    whose dataset turned out invalid before any worker took it).
    """
    error = {"error_type": error_type, "message": message, **({"details": details} if details else {})}
    values = {**_LET_GO, "error": error, "finished_at": utcnow()}
    event = Event("failed", message, {"error_type": error_type})
    with db.write() as session:
        return transition(session, job_id, S.FAILED, event, attempt=attempt, values=values)
