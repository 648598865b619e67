"""The supervisor's reports in the store: telemetry batches, fencing, and how a released attempt ends."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tuneyard.scheduler import ClaimedJob, claim, reap
from tuneyard.store import Database, jobs, lifecycle, telemetry
from tuneyard.store.ids import utcnow
from tuneyard.worker.outcome import ExitStatus, LeaseLost, Outcome, TelemetryRecord, Verdict
from tuneyard.worker.store_reporter import StoreReporter

LINEAGE = {"base_model": "tiny-llama", "method": "lora", "datasets": [], "type": "finetune"}


def running(db: Database, new_job: Callable[..., str], tmp_path: Path) -> tuple[str, StoreReporter]:
    job_id = new_job()
    claimed: ClaimedJob | None = claim(db, "w1", lease_seconds=30)
    assert claimed is not None and claimed.job_id == job_id
    reporter = StoreReporter(db, job_id, claimed.attempt, tmp_path / job_id, 30, LINEAGE)
    reporter.on_started("local pid 12345")
    return job_id, reporter


def metric(step: int, loss: float) -> TelemetryRecord:
    return {"kind": "metric", "step": step, "loss": loss, "epoch": 0.5, "total_steps": 10, "ts": 1.0e9 + step}


def test_a_batch_is_stored_in_file_order_with_progress_events_and_checkpoints(
    db: Database, new_job: Callable[..., str], org_id: str, tmp_path: Path
) -> None:
    job_id, reporter = running(db, new_job, tmp_path)
    reporter.on_records([
        {"kind": "phase", "phase": "train"},
        metric(1, 3.0), {"kind": "log", "message": "step 1", "level": "info"},
        metric(2, 2.5), {"kind": "log", "message": "step 2", "level": "info"},
        {"kind": "checkpoint", "step": 2, "path": "checkpoints/step-000002", "loss": 2.5},
        {"kind": "eval", "step": 2, "eval_loss": 2.7},
        {"kind": "metric", "loss": 9.9},  # no step: reported in the log, the rest still stored
        {"kind": "checkpoint", "step": 4, "path": "checkpoints/step-000004"},
        {"kind": "result", "final_loss": 2.5},  # read by the verdict, not stored as telemetry
    ], offset=1000)
    points = telemetry.list_metrics(db, job_id)
    assert [(p.kind, p.step) for p in points] == [("train", 1), ("eval", 2), ("train", 2)]
    lines = telemetry.list_logs(db, job_id)
    assert [line.seq for line in lines] == [1, 2, 3]
    assert [line.message for line in lines[:2]] == ["step 1", "step 2"]
    assert lines[2].level == "warning" and "not stored" in lines[2].message
    events = telemetry.list_events(db, job_id)
    assert [e.type for e in events][-3:] == ["phase", "checkpoint", "checkpoint"]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [c.step for c in telemetry.list_checkpoints(db, job_id)] == [2, 4]
    job = jobs.get_job(db, org_id, job_id)
    assert job.last_checkpoint_step == 4
    assert job.progress == {"step": 2, "total_steps": 10, "epoch": 0.5, "loss": 2.5}

    reporter.on_records([metric(2, 2.5), metric(3, 2.0)], offset=1200)  # steps repeat after a resume
    assert [p.step for p in telemetry.list_metrics(db, job_id, kind="train")] == [1, 2, 3]
    assert jobs.get_job(db, org_id, job_id).progress["step"] == 3

    # save_total_limit: the runner deleted the older folders as it kept step 6.
    reporter.on_records([{"kind": "checkpoint", "step": 6, "path": "checkpoints/step-000006", "pruned": [2, 4]}],
                        offset=1300)
    assert [c.step for c in telemetry.list_checkpoints(db, job_id)] == [6]
    assert jobs.get_job(db, org_id, job_id).last_checkpoint_step == 6


def test_the_final_eval_phase_marks_the_job_finalizing(
    db: Database, new_job: Callable[..., str], org_id: str, tmp_path: Path
) -> None:
    job_id, reporter = running(db, new_job, tmp_path)
    reporter.on_records([metric(1, 3.0), {"kind": "phase", "phase": "final_eval"}], offset=100)
    assert jobs.get_job(db, org_id, job_id).status == "finalizing"


def test_a_batch_from_a_stale_attempt_is_refused_whole(
    db: Database, new_job: Callable[..., str], tmp_path: Path
) -> None:
    job_id, reporter = running(db, new_job, tmp_path)
    reap(db, now=utcnow().replace(year=utcnow().year + 1))  # the lease expired: re-queued
    with pytest.raises(LeaseLost):
        reporter.on_records([metric(1, 3.0), {"kind": "log", "message": "late"}], offset=100)
    assert telemetry.list_metrics(db, job_id) == [] and telemetry.list_logs(db, job_id) == []


@pytest.mark.parametrize(("request_", "ends"), [("cancel", "cancelled"), ("stop", "stopped")])
def test_a_runner_released_while_a_user_request_was_on_its_way_ends_as_the_user_asked(
    db: Database, new_job: Callable[..., str], org_id: str, tmp_path: Path, request_: str, ends: str
) -> None:
    # The worker shuts down (release) in the same moment a user stops or cancels the job, before
    # a heartbeat relayed the request: the runner checkpointed and left, as both wanted.
    job_id, reporter = running(db, new_job, tmp_path)
    (lifecycle.request_cancel if request_ == "cancel" else lifecycle.request_stop)(db, org_id, job_id)
    released = Outcome(Verdict.RELEASED, ExitStatus(75), "released to the queue",
                       last_checkpoint={"kind": "checkpoint", "step": 4})
    reporter.on_finished(released)
    job = jobs.get_job(db, org_id, job_id)
    assert (job.status, job.retries, job.worker_id) == (ends, 0, None)


def test_a_released_runner_goes_back_to_the_queue_without_a_retry(
    db: Database, new_job: Callable[..., str], org_id: str, tmp_path: Path
) -> None:
    job_id, reporter = running(db, new_job, tmp_path)
    reporter.on_finished(Outcome(Verdict.RELEASED, ExitStatus(75), "released to the queue"))
    job = jobs.get_job(db, org_id, job_id)
    assert (job.status, job.retries) == ("queued", 0)
    assert telemetry.list_events(db, job_id)[-1].type == "released"
