"""Moves the other store tests do not reach: a failed runner's retry-or-fail, a held job's cancel."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tuneyard.store import Database, jobs, lifecycle, telemetry
from tuneyard.store.errors import InvalidTransition, StaleAttempt
from tuneyard.store.lifecycle import ClaimedJob


def _running(db: Database, worker: str = "w1") -> ClaimedJob:
    claimed = lifecycle.claim(db, worker, lease_seconds=30, device="cpu")
    assert claimed is not None
    lifecycle.start(db, claimed.job_id, claimed.attempt)
    return claimed


def test_a_failed_runner_is_retried_from_its_latest_checkpoint_then_failed_with_its_details(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job(max_retries=1)
    first = _running(db)
    telemetry.add_checkpoint(db, job_id, first.attempt, 5, "checkpoints/step-000005")
    latest = telemetry.add_checkpoint(db, job_id, first.attempt, 10, "checkpoints/step-000010")
    details = {"exit_code": -9, "log_tail": ["Killed"]}

    assert lifecycle.retry_or_fail(db, job_id, first.attempt, "platform_error", "runner killed", details) == "queued"
    job = jobs.get_job(db, org_id, job_id)
    assert (job.status, job.retries, job.resume_from, job.worker_id, job.error) == ("queued", 1, latest.id, None, None)
    retrying = telemetry.list_events(db, job_id)[-1]
    assert (retrying.type, retrying.message) == ("retrying", "attempt 1 failed: runner killed")
    assert retrying.data == {"status": "queued", "reason": "platform_error", "attempt": 1, "details": details}
    with pytest.raises(StaleAttempt):  # the attempt let go: a second verdict from it is refused
        lifecycle.retry_or_fail(db, job_id, first.attempt, "platform_error", "again")

    second = _running(db)
    assert (second.attempt, second.resume_path) == (2, "checkpoints/step-000010")
    assert lifecycle.retry_or_fail(db, job_id, second.attempt, "platform_error", "runner killed", details) == "failed"
    job = jobs.get_job(db, org_id, job_id)
    assert (job.status, job.retries, job.worker_id) == ("failed", 1, None) and job.finished_at is not None
    assert job.error == {"error_type": "platform_error", "message": "runner killed; gave up after 1 retries",
                         "details": details}
    assert telemetry.list_events(db, job_id)[-1].type == "failed"


def test_a_held_job_cancelled_by_its_user_ends_when_its_worker_says_the_runner_is_gone(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job()
    held = _running(db)
    assert lifecycle.request_cancel(db, org_id, job_id).status == "cancelling"
    with pytest.raises(InvalidTransition, match="is cancelling"):  # a cancel is not retried
        lifecycle.retry_or_fail(db, job_id, held.attempt, "platform_error", "killed")
    done = lifecycle.finish_cancel(db, job_id, held.attempt)
    assert (done.status, done.cancel_requested, done.worker_id, done.lease_expires_at) == (
        "cancelled", True, None, None)
    assert done.finished_at is not None
    assert [e.type for e in telemetry.list_events(db, job_id)][-2:] == ["cancel_requested", "cancelled"]
