"""A runner that failed for a reason of the platform's: try again, up to the job's limit.

The same rule the reaper applies to an expired lease, for the case the worker saw with its own
eyes (the runner was killed, crashed, or exited without a verdict): back to the queue to resume
from the latest checkpoint with `retries` + 1, or failed once `max_retries` is spent. Fenced by
the attempt, like every write a worker makes.
"""

from __future__ import annotations

from typing import Any

from tuneyard.store.engine import Database
from tuneyard.store.ids import utcnow
from tuneyard.store.status import Event, JobStatus, fence, transition
from tuneyard.store.telemetry import latest_checkpoint_id

_LET_GO: dict[str, Any] = {"worker_id": None, "lease_expires_at": None}


def retry_or_fail(
    db: Database, job_id: str, attempt: int, error_type: str, message: str, details: dict[str, Any] | None = None
) -> JobStatus:
    """Re-queue the job (counted) or fail it past its retry limit; returns the new status."""
    with db.write() as session:
        job = fence(session, job_id, attempt)
        data = {"reason": error_type, "attempt": attempt, **({"details": details} if details else {})}
        if job.retries >= job.max_retries:
            final = f"{message}; gave up after {job.retries} retries"
            error = {"error_type": error_type, "message": final, **({"details": details} if details else {})}
            values = {**_LET_GO, "error": error, "finished_at": utcnow()}
            transition(session, job_id, JobStatus.FAILED, Event("failed", final, data),
                       attempt=attempt, values=values)
            return JobStatus.FAILED
        values = {**_LET_GO, "retries": job.retries + 1, "resume_from": latest_checkpoint_id(session, job_id)}
        transition(session, job_id, JobStatus.QUEUED, Event("retrying", f"attempt {attempt} failed: {message}", data),
                   attempt=attempt, only_from=(JobStatus.STARTING, JobStatus.RUNNING, JobStatus.FINALIZING),
                   values=values)
        return JobStatus.QUEUED
