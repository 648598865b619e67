"""The one job view: figures derived from the row once, and the stored error types."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tuneyard.errors import ErrorType, PlatformError, UserError
from tuneyard.services.job_view import JobView
from tuneyard.services.path_display import PathDisplay
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Job
from tuneyard.worker.outcome import LeaseLost


def row(status: str = "running", progress: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> Job:
    return Job(id="job_1", org_id="org_1", type="finetune", name="n", status=status, project_id=None, retries=0,
               attempt=1, max_retries=3, last_checkpoint_step=None, output_model_id=None,
               created_at=datetime(2026, 1, 1, tzinfo=UTC), started_at=None, finished_at=None,
               progress=progress or {}, error=error, stop_requested=False, cancel_requested=False,
               config={"type": "finetune"}, spec={"base_model": "tiny-llama"})


NO_PATHS = PathDisplay()


def view_of(job: Job) -> JobView:
    return JobView.of(job, NO_PATHS)


def test_progress_percent_and_the_latest_loss_come_from_the_runners_last_record() -> None:
    view = view_of(row(progress={"step": 3, "total_steps": 8, "epoch": 0.5, "loss": 1.25, "eta_s": 4.0}))
    assert view.status is JobStatus.RUNNING
    assert (view.progress.step, view.progress.total_steps, view.progress.percent) == (3, 8, 37.5)
    assert (view.progress.epoch, view.progress.eta_s, view.loss) == (0.5, 4.0, 1.25)


@pytest.mark.parametrize("progress", [{}, {"step": 3}, {"step": 3, "total_steps": 0}, {"step": 1.5, "total_steps": 4}])
def test_no_percent_without_an_integer_step_and_a_total(progress: dict[str, Any]) -> None:
    assert view_of(row(progress=progress)).progress.percent is None


def test_a_completed_job_is_at_100_percent_whatever_its_last_step_said() -> None:
    assert view_of(row("completed", {"step": 7, "total_steps": 8})).progress.percent == 100.0
    assert view_of(row("completed")).progress.percent == 100.0


@pytest.mark.parametrize(("stored", "expected"), [
    (None, None),
    ({"error_type": "user_error", "message": "bad data"}, ErrorType.USER_ERROR),
    ({"error_type": "platform_error", "message": "killed"}, ErrorType.PLATFORM_ERROR),
    ({"error_type": "lease_lost", "message": "gone"}, ErrorType.LEASE_LOST),
    ({"error_type": "out_of_memory", "message": "a runner's own finer code"}, ErrorType.PLATFORM_ERROR),
    ({"message": "no type recorded"}, None),
])
def test_the_error_type_is_read_from_the_stored_error(
    stored: dict[str, Any] | None, expected: ErrorType | None
) -> None:
    view = view_of(row("failed", error=stored))
    assert view.error_type is expected
    assert view.error == stored  # kept verbatim beside it


def test_error_classes_write_the_stored_strings_unchanged() -> None:
    assert [UserError.error_type, PlatformError.error_type, LeaseLost.error_type] == [
        "user_error", "platform_error", "lease_lost"]
    assert {t.value for t in ErrorType} == {"user_error", "platform_error", "lease_lost"}
