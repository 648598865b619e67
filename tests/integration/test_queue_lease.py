"""Leases, fencing and the reaper."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tuneyard.scheduler import ClaimedJob, claim, heartbeat, reap, release
from tuneyard.store import Database, jobs, lifecycle, telemetry
from tuneyard.store.errors import StaleAttempt
from tuneyard.store.ids import utcnow
from tuneyard.store.status import Event
from tuneyard.store.telemetry import LogIn, MetricIn

LATER = timedelta(seconds=120)  # well past a 30 s lease


def _claim(db: Database, worker: str) -> ClaimedJob:
    job = claim(db, worker, lease_seconds=30)
    assert job is not None
    return job


def _events(db: Database, job_id: str) -> list[str]:
    return [e.type for e in telemetry.list_events(db, job_id)]


def test_a_worker_whose_lease_expired_cannot_write_once_another_attempt_holds_the_job(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job()
    old = _claim(db, "w1")
    lifecycle.start(db, job_id, old.attempt)
    ckpt = telemetry.add_checkpoint(db, job_id, old.attempt, 10, "checkpoints/step-000010")
    telemetry.record_metrics(db, job_id, old.attempt, [MetricIn(step=10, values={"loss": 2.0})])

    assert [r.new_status for r in reap(db, now=utcnow() + LATER)] == ["queued"]
    requeued = jobs.get_job(db, org_id, job_id)
    assert (requeued.status, requeued.retries, requeued.resume_from) == ("queued", 1, ckpt.id)
    assert _events(db, job_id)[-1] == "lease_expired"
    # Refused already, before anyone claims it again (the attempt number has not moved yet).
    for early in (
        lambda: telemetry.append_logs(db, job_id, old.attempt, [LogIn("late")]),
        lambda: lifecycle.fail(db, job_id, "platform_error", "x", attempt=old.attempt),
        lambda: lifecycle.finish_stop(db, job_id, old.attempt),
        lambda: heartbeat(db, job_id, old.attempt, 30),
    ):
        with pytest.raises(StaleAttempt):
            early()
    assert jobs.get_job(db, org_id, job_id).status == "queued"

    new = _claim(db, "w2")
    assert (new.attempt, new.resume_from, new.resume_path) == (2, ckpt.id, "checkpoints/step-000010")
    stale_writes: list[Callable[[], object]] = [
        lambda: heartbeat(db, job_id, old.attempt, 30),
        lambda: telemetry.record_metrics(db, job_id, old.attempt, [MetricIn(step=11, values={"loss": 9.0})]),
        lambda: telemetry.append_logs(db, job_id, old.attempt, [LogIn("from the dead")]),
        lambda: telemetry.add_event(db, job_id, old.attempt, Event("phase", "x")),
        lambda: telemetry.add_checkpoint(db, job_id, old.attempt, 20, "x"),
        lambda: lifecycle.start(db, job_id, old.attempt),
        lambda: lifecycle.finalize(db, job_id, old.attempt),
        lambda: lifecycle.complete(db, job_id, old.attempt, {"ok": True}),
        lambda: lifecycle.fail(db, job_id, "platform_error", "x", attempt=old.attempt),
        lambda: release(db, job_id, old.attempt, "shutdown"),
    ]
    for write in stale_writes:
        with pytest.raises(StaleAttempt):
            write()
    assert telemetry.list_metrics(db, job_id, since_step=10) == []
    assert telemetry.count_log_lines(db, job_id) == 0
    assert [c.step for c in telemetry.list_checkpoints(db, job_id)] == [10]

    lifecycle.start(db, job_id, new.attempt)  # the current attempt still can
    heartbeat(db, job_id, new.attempt, 30)
    assert jobs.get_job(db, org_id, job_id).status == "running"


def test_the_reaper_gives_up_past_max_retries_with_a_platform_error(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job(max_retries=1)
    _claim(db, "w1")
    assert reap(db, now=utcnow() + LATER)[0].new_status == "queued"
    _claim(db, "w2")
    assert reap(db, now=utcnow() + LATER)[0].new_status == "failed"
    job = jobs.get_job(db, org_id, job_id)
    assert (job.status, job.retries, job.attempt) == ("failed", 1, 2)
    assert job.error is not None and job.error["error_type"] == "platform_error"
    assert "lease" in job.error["message"] and job.finished_at is not None
    assert reap(db, now=utcnow() + LATER) == []


def test_a_heartbeat_keeps_the_reaper_away(db: Database, new_job: Callable[..., str]) -> None:
    new_job()
    held = _claim(db, "w1")
    soon = utcnow() + timedelta(seconds=25)
    heartbeat(db, held.job_id, held.attempt, 30, now=soon)
    assert reap(db, now=utcnow() + timedelta(seconds=40)) == []
    assert len(reap(db, now=soon + timedelta(seconds=31))) == 1


def test_release_hands_the_job_back_without_counting_a_retry(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job()
    held = _claim(db, "w1")
    release(db, job_id, held.attempt, "worker shutting down")
    job = jobs.get_job(db, org_id, job_id)
    assert (job.status, job.retries, job.worker_id) == ("queued", 0, None)
    assert _events(db, job_id)[-1] == "released"
    assert _claim(db, "w2").attempt == 2


def test_users_requests_reach_the_worker_through_its_heartbeat_and_expired_ones_settle(
    db: Database, new_job: Callable[..., str], org_id: str
) -> None:
    stop_id, cancel_id = new_job(), new_job()
    stopping, cancelling = _claim(db, "w1"), _claim(db, "w1")
    lifecycle.request_stop(db, org_id, stop_id)
    lifecycle.request_cancel(db, org_id, cancel_id)
    lease = heartbeat(db, stop_id, stopping.attempt, 30)
    assert (lease.status, lease.stop_requested) == ("stopping", True)
    assert heartbeat(db, cancel_id, cancelling.attempt, 30).cancel_requested
    # The worker died mid-stop / mid-cancel: the user's wish is what the job becomes.
    outcome = {r.job_id: r.new_status for r in reap(db, now=utcnow() + LATER)}
    assert outcome == {stop_id: "stopped", cancel_id: "cancelled"}
