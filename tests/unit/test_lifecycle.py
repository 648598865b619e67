"""The one retry decision, and the moves that let go of a worker, on the in-memory store."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.store import memory_database
from tuneyard.store import Database, jobs, lifecycle, tenancy
from tuneyard.store.ids import utcnow
from tuneyard.store.lifecycle import retry_decision
from tuneyard.store.status import JobStatus

S = JobStatus


@pytest.mark.parametrize(
    ("retries", "max_retries", "decided"),
    [(0, 3, S.QUEUED), (2, 3, S.QUEUED), (3, 3, S.FAILED), (4, 3, S.FAILED), (0, 0, S.FAILED)],
)
def test_a_job_is_retried_while_retries_remain_and_failed_once_they_are_spent(
    retries: int, max_retries: int, decided: JobStatus
) -> None:
    assert retry_decision(retries, max_retries) is decided


def test_with_max_retries_n_a_job_runs_at_most_n_plus_one_times() -> None:
    retries, runs = 0, 1
    while retry_decision(retries, 2) is S.QUEUED:
        retries, runs = retries + 1, runs + 1
    assert (retries, runs) == (2, 3)


def _held(db: Database, max_retries: int = 3) -> tuple[str, int]:
    """A running job, claimed by worker w1, in an otherwise empty queue."""
    org_id = tenancy.create_org(db, "o").id
    new = jobs.NewJob(org_id=org_id, type="finetune", spec={}, config={}, max_retries=max_retries)
    job_id = jobs.create_job(db, new).job.id
    claimed = lifecycle.claim(db, "w1", lease_seconds=30, device="cpu")
    assert claimed is not None and claimed.job_id == job_id
    lifecycle.start(db, job_id, claimed.attempt)
    return job_id, claimed.attempt


def _let_go(db: Database, job_id: str) -> bool:
    job = jobs.load_job(db, job_id)
    return job.worker_id is None and job.lease_expires_at is None


@pytest.mark.parametrize("ends", ["completed", "failed", "queued"])
def test_every_move_that_ends_a_hold_clears_the_worker_and_the_lease(ends: str) -> None:
    db = memory_database()
    job_id, attempt = _held(db)
    assert jobs.load_job(db, job_id).worker_id == "w1"
    if ends == "completed":
        lifecycle.finalize(db, job_id, attempt)
        lifecycle.complete(db, job_id, attempt, {"ok": True})
    elif ends == "failed":
        lifecycle.fail(db, job_id, "user_error", "bad data", attempt=attempt)
    else:
        lifecycle.release(db, job_id, attempt, "shutting down")
    assert jobs.load_job(db, job_id).status == ends
    assert _let_go(db, job_id)


@pytest.mark.parametrize("path", ["worker", "reaper"])
def test_a_failed_runner_and_an_expired_lease_retry_once_then_fail_alike(path: str) -> None:
    db = memory_database()
    job_id, attempt = _held(db, max_retries=1)
    assert _fail_once(db, job_id, attempt, path) == "queued"
    assert _let_go(db, job_id)
    again = lifecycle.claim(db, "w2", lease_seconds=30, device="cpu")
    assert again is not None and again.job_id == job_id
    assert _fail_once(db, job_id, again.attempt, path) == "failed"
    job = jobs.load_job(db, job_id)
    assert (job.status, job.retries, job.attempt, job.worker_id, job.lease_expires_at) == ("failed", 1, 2, None, None)
    assert job.error is not None and job.error["error_type"] == "platform_error"
    assert job.error["message"].endswith("; gave up after 1 retries")


def _fail_once(db: Database, job_id: str, attempt: int, path: str) -> str:
    """The attempt dies: seen by its worker (the runner crashed) or by the reaper (the worker did)."""
    if path == "worker":
        return lifecycle.retry_or_fail(db, job_id, attempt, "platform_error", "runner killed").value
    [reaped] = lifecycle.reap(db, now=utcnow() + timedelta(minutes=5))
    return reaped.new_status
