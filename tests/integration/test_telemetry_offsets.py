"""Telemetry stored exactly once across a worker's death: the offset committed with its records,
the next attempt reading on from it, and what the dead attempt left unstored stored as that
attempt's. A real worker runs tests/support/fake_runner.py; the dead attempt is played by hand."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from tests.integration.test_supervisor import FAKE_RUNNER
from tuneyard.scheduler import ClaimedJob, claim, reap
from tuneyard.services import runs
from tuneyard.settings import Settings
from tuneyard.store import Database, jobs, telemetry
from tuneyard.store.errors import StaleAttempt
from tuneyard.store.ids import utcnow
from tuneyard.store.tables import Checkpoint, Job, LogLine, MetricPoint
from tuneyard.worker.executors import Launch
from tuneyard.worker.executors.local import LocalExecutor, LocalProcess
from tuneyard.worker.loop import Worker, _store_backlog
from tuneyard.worker.outcome import Verdict
from tuneyard.worker.store_reporter import StoreReporter

LINEAGE = {"base_model": "tiny-llama", "method": "lora", "datasets": [], "type": "finetune"}


class FakeRunners(LocalExecutor):
    """Runs the fake runner (three steps, then a result) in place of the real one."""

    def start(self, launch: Launch) -> LocalProcess:
        argv = [sys.executable, str(FAKE_RUNNER), "--run-dir", str(launch.run_dir), "--steps", "3"]
        return super().start(replace(launch, argv=argv))


def append(path: Path, *records: dict[str, Any]) -> int:
    """Write records as a runner does; returns the file's size after them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        file.writelines(json.dumps({"ts": 1.0e9, **r}) + "\n" for r in records)
    return path.stat().st_size


def claimed(db: Database, job_id: str) -> ClaimedJob:
    got = claim(db, "w1", lease_seconds=30)
    assert got is not None and got.job_id == job_id
    return got


def expire(db: Database) -> None:
    reap(db, now=utcnow().replace(year=utcnow().year + 1))


def rows(db: Database, order: Any, *columns: Any) -> list[tuple[Any, ...]]:
    with db.read() as session:
        return [tuple(row) for row in session.execute(select(*columns).order_by(order))]


def test_a_dead_attempts_unstored_telemetry_is_stored_once_as_its_own_by_the_next(
    db: Database, settings: Settings, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job()
    path = runs.run_dir(settings, job_id) / "telemetry.jsonl"
    # Attempt 1 starts its runner, stores one read of it, and dies with two more lines unread.
    first = claimed(db, job_id)
    assert (first.telemetry_offset, first.telemetry_attempt) == (0, None)
    dead = StoreReporter(db, job_id, first.attempt, path.parent, 30, LINEAGE)
    dead.on_backlog([], 0, None)
    lines: list[dict[str, Any]] = [{"kind": "phase", "phase": "training"}, {"kind": "metric", "step": 1, "loss": 1.0},
                                   {"kind": "log", "message": "one"}]
    stored = append(path, *lines)
    dead.on_records(lines, stored)
    unseen = [{"kind": "metric", "step": 2, "loss": 0.5}, {"kind": "log", "message": "two"},
              {"kind": "checkpoint", "step": 2, "path": "checkpoints/step-000002"}]
    append(path, *unseen)
    expire(db)

    # Attempt 2: a real worker, whose runner starts over and writes steps 1 to 3 again.
    worker = Worker(db, replace(settings, heartbeat_seconds=0.1, telemetry_seconds=0.05), {}, executor=FakeRunners())
    second = claimed(db, job_id)
    assert (second.telemetry_offset, second.telemetry_attempt) == (stored, first.attempt)
    outcome = worker.run_job(second, threading.Event())
    assert outcome.verdict is Verdict.COMPLETED, outcome

    in_file = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows(db, LogLine.seq, LogLine.message, LogLine.attempt) == [("one", 1), ("two", 1)]
    assert [r.message for r in telemetry.list_logs(db, job_id)] == [r["message"] for r in in_file
                                                                  if r["kind"] == "log"]
    # Steps repeat after the restart: the point stored first for a step is kept, whoever wrote it.
    assert rows(db, MetricPoint.step, MetricPoint.step, MetricPoint.attempt) == [(1, 1), (2, 1), (3, 2)]
    assert rows(db, Checkpoint.step, Checkpoint.step, Checkpoint.attempt) == [(2, 1)]
    phases = [e.data for e in telemetry.list_events(db, job_id) if e.type in ("phase", "checkpoint")]
    assert [(d.get("phase", "ckpt"), d["attempt"]) for d in phases] == [("training", 1), ("ckpt", 1), ("training", 2)]
    job = jobs.get_job(db, org_id, job_id)
    assert (job.status, job.telemetry_offset, job.telemetry_attempt) == ("completed", path.stat().st_size, 2)


def test_an_offset_and_the_records_it_covers_are_committed_together_or_not_at_all(
    db: Database, new_job: Callable[..., str], org_id: str, tmp_path: Path
) -> None:
    job_id = new_job()
    attempt = claimed(db, job_id).attempt
    batch: list[telemetry.TelemetryItem] = [telemetry.MetricIn(1, {"loss": 1.0}), telemetry.LogIn("one")]
    telemetry.record_telemetry(db, job_id, attempt, batch, offset=100)
    broken = [telemetry.MetricIn(2, {"loss": 0.5}), telemetry.LogIn("two"),
              telemetry.CheckpointIn(2, None)]  # type: ignore[arg-type] - fails last, inside the transaction
    with pytest.raises(IntegrityError):
        telemetry.record_telemetry(db, job_id, attempt, broken, offset=200)
    expire(db)  # and a batch from an attempt that lost the job is refused whole
    with pytest.raises(StaleAttempt):
        telemetry.record_telemetry(db, job_id, attempt, batch[:1], offset=300)
    job = jobs.get_job(db, org_id, job_id)
    assert (job.telemetry_offset, job.telemetry_attempt) == (100, attempt)
    assert [p.step for p in telemetry.list_metrics(db, job_id)] == [1]
    assert [line.message for line in telemetry.list_logs(db, job_id)] == ["one"]
    assert claimed(db, job_id).telemetry_offset == 100


def test_a_job_from_before_offsets_were_kept_reads_on_from_the_end_of_its_file(
    db: Database, settings: Settings, new_job: Callable[..., str], org_id: str
) -> None:
    job_id = new_job()
    with db.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(telemetry_offset=None))
    path = runs.run_dir(settings, job_id) / "telemetry.jsonl"
    size = append(path, {"kind": "log", "message": "stored by an attempt of the old code"})
    got = claimed(db, job_id)
    reporter = StoreReporter(db, job_id, got.attempt, path.parent, 30, LINEAGE)
    assert _store_backlog(got, path, reporter) == size
    assert telemetry.list_logs(db, job_id) == []
    assert jobs.get_job(db, org_id, job_id).telemetry_offset == size
    expire(db)  # a job that moved on before its runner started: nothing stored, nothing started
    assert _store_backlog(got, path, reporter) is None


def test_a_backlog_the_store_refuses_is_left_for_the_supervisor_to_read_from_the_committed_offset(
    db: Database, settings: Settings, new_job: Callable[..., str]
) -> None:
    class Down(StoreReporter):
        def on_backlog(self, records: Any, offset: int, written_by: int | None) -> None:
            raise RuntimeError("database is down")

    job_id = new_job()
    path = runs.run_dir(settings, job_id) / "telemetry.jsonl"
    append(path, {"kind": "log", "message": "written by a runner whose worker died"})
    got = claimed(db, job_id)
    assert _store_backlog(got, path, Down(db, job_id, got.attempt, path.parent, 30, LINEAGE)) == 0
