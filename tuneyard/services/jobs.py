"""Job use-cases: submit, read, list, stop, cancel, resume, delete, and what a job produced."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from tuneyard.services import devices, estimates, job_secrets, memory_admission, path_display, templates
from tuneyard.services.errors import RateLimited, TrainingFailed
from tuneyard.services.job_view import JobView
from tuneyard.services.runs import remove_run, run_dir
from tuneyard.services.submission import JobRequest, plan_job
from tuneyard.settings import Settings
from tuneyard.store import catalog as models_store
from tuneyard.store import jobs as store
from tuneyard.store import lifecycle
from tuneyard.store.admission import admit_job
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.model_paths import move_trained_model
from tuneyard.store.quotas import Quotas
from tuneyard.store.ratelimit import RateDecision
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Job
from tuneyard.store.tenancy import Principal

log = logging.getLogger(__name__)

RATE_WINDOW_S = 60.0


@dataclass(frozen=True)
class Submitted:
    job: JobView
    created: bool  # False: the same idempotency key and body were seen before; this is that job
    rate: RateDecision


@dataclass(frozen=True)
class JobList:
    items: list[JobView]
    next_cursor: str | None  # None on the last page


def submit_job(db: Database, settings: Settings, caller: Principal, request: JobRequest) -> Submitted:
    """Validate the whole request, then queue the job (or return the one this key already made).

    Raises InvalidRequest (every problem at once; a job no live worker has the memory for, with its
    estimate: `memory_admission`), IdempotencyConflict, RateLimited, or
    QuotaExceeded (the organization's queued and running jobs).
    """
    plan = plan_job(db, settings, caller.org_id, templates.with_template(db, caller.org_id, request))
    if "price_per_device_hour" in plan.config:  # a type whose runner prices its result (train): the service's price
        device = plan.request.device or estimates.likely_device(db)
        plan.config["price_per_device_hour"] = estimates.price_per_hour(settings, device)
    memory = memory_admission.admit(db, settings, caller.org_id, plan)
    held = job_secrets.hold(db, request.secrets)  # before the row: a worker may claim it at once
    new = store.NewJob(
        org_id=caller.org_id, type=plan.type, spec=plan.spec, config=plan.config,
        name=request.name, project_id=request.project_id, user_key_id=caller.key_id,
        max_retries=settings.max_retries, idempotency_key=plan.idempotency_key, labels={**plan.labels, **held},
        memory_estimate_bytes=memory, required_device=plan.request.device,
    )
    try:
        admission = admit_job(
            db, new, plan.body_hash, subject=f"job-create:{caller.key_id}",
            limit=settings.job_create_rate_per_minute, window_s=RATE_WINDOW_S, quotas=Quotas.of(settings),
        )
    except BaseException:
        job_secrets.settle(db, held, None)
        raise
    job_secrets.settle(db, held, admission.job)
    rate = admission.decision
    if admission.job is None:
        raise RateLimited(rate.limit, rate.remaining, rate.retry_after_s, rate.reset_after_s)
    return Submitted(views(db, settings, [admission.job])[0], admission.created, rate)


def views(db: Database, settings: Settings, rows: Sequence[Job]) -> list[JobView]:
    """Jobs as clients see them, server paths shown (`path_display`): one read for all of them."""
    with db.read() as session:
        return views_in(session, settings, rows)


def views_in(session: Session, settings: Settings, rows: Sequence[Job]) -> list[JobView]:
    """The same, inside a read the caller already holds."""
    shown = path_display.for_jobs(session, settings, rows)
    waiting = _waiting_reasons(session, settings, rows)
    return [JobView.of(job, shown[job.id], waiting.get(job.id)) for job in rows]


def _waiting_reasons(session: Session, settings: Settings, rows: Sequence[store.Placed]) -> dict[str, str]:
    """Why queued jobs wait longer than the queue: a device no live worker has says more than memory
    (no worker of the wrong device takes the job, however big)."""
    return {**memory_admission.waiting_reasons(session, settings, rows),
            **devices.waiting_reasons(session, settings, rows)}


def display(db: Database, settings: Settings, job: Job) -> path_display.PathDisplay:
    """What the job's files show in place of the server's paths (`path_display`)."""
    with db.read() as session:
        return path_display.for_job(session, settings, job)


def view_in(session: Session, settings: Settings, job: Job) -> JobView:
    """The same, inside a read the caller already holds."""
    return JobView.of(job, path_display.for_job(session, settings, job), waiting_reason(session, settings, job) or None)


def waiting_reason(session: Session, settings: Settings, job: Job) -> str:
    """Why the job waits beyond its place in line ("" when it does not): the one part of its view
    that depends on other rows than its own (the live workers), read without rendering the rest."""
    return _waiting_reasons(session, settings, [job]).get(job.id, "")


def get_job(db: Database, settings: Settings, org_id: str, job_id: str) -> JobView:
    return views(db, settings, [store.get_job(db, org_id, job_id)])[0]


def list_jobs(db: Database, settings: Settings, query: store.JobQuery) -> JobList:
    with db.read() as session:
        return list_in(session, settings, query)


def list_in(session: Session, settings: Settings, query: store.JobQuery) -> JobList:
    """The same, inside a read the caller already holds."""
    page = store.page_in(session, query)
    return JobList(views_in(session, settings, page.items), page.next_cursor)


ListVaries = Callable[[Session, list[store.Listed]], str]
"""What a list's answer shows beyond its jobs' rows, named from the page's `Listed` rows (cheaply: never
the telemetry tables), e.g. the console's queue positions."""


def list_state(db: Database, settings: Settings, query: store.JobQuery, varies: ListVaries | None = None) -> str:
    """What the answer of `list_jobs(query)` depends on, named without reading its jobs' rows: each job's
    id and revision in the page's order, whether more follow, why its queued jobs wait (the live workers,
    as a single job's read folds in), and `varies`. A list's ETag is made of it (`api/conditional.py`)."""
    with db.read() as session:
        return list_state_in(session, settings, query, varies)


def list_state_in(session: Session, settings: Settings, query: store.JobQuery, varies: ListVaries | None = None
                  ) -> str:
    """The same, inside a read the caller already holds."""
    rows, more = store.listed(session, query)
    waiting = _waiting_reasons(session, settings, rows)
    also = varies(session, rows) if varies is not None else ""
    named = "\x1e".join(f"{row.id}\x1f{row.revision}\x1f{waiting.get(row.id, '')}" for row in rows)
    return f"{named}\0{more}\0{also}"


def cursor_after(db: Database, org_id: str, job_id: str) -> str:
    """The list cursor that continues after the organization's job `job_id` (NotFound for another's):
    for APIs whose clients page by the last id they saw (OpenAI's `after`)."""
    return store.encode_cursor(store.get_job(db, org_id, job_id))


def stop_job(db: Database, settings: Settings, org_id: str, job_id: str) -> JobView:
    return views(db, settings, [lifecycle.request_stop(db, org_id, job_id)])[0]


def cancel_job(db: Database, settings: Settings, org_id: str, job_id: str) -> JobView:
    return views(db, settings, [lifecycle.request_cancel(db, org_id, job_id)])[0]


def resume_job(db: Database, settings: Settings, org_id: str, job_id: str,
               checkpoint_id: str | None = None) -> JobView:
    resumed = lifecycle.request_resume(db, org_id, job_id, checkpoint_id, Quotas.of(settings))
    return views(db, settings, [resumed])[0]


def delete_job(db: Database, settings: Settings, org_id: str, job_id: str) -> None:
    """Delete the job's rows and its run folder; a trained model it made keeps its weights."""
    job = store.delete_job(db, org_id, job_id)
    folder = run_dir(settings, job.id)
    if job.output_model_id is not None:
        _rescue_model(db, settings, org_id, job.output_model_id, folder)
    remove_run(settings, job.id)


def _rescue_model(db: Database, settings: Settings, org_id: str, model_id: str, folder: Path) -> None:
    # The model outlives its job (store.catalog): move its weights out of the run folder first.
    try:
        model = models_store.get_trained_model(db, org_id, model_id)
    except NotFound:
        return
    weights = Path(model.path)
    if not weights.is_dir() or not weights.resolve().is_relative_to(folder.resolve()):
        return
    target = models_dir(settings) / model_id
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(weights), str(target))
    move_trained_model(db, model_id, str(target))


def models_dir(settings: Settings) -> Path:
    return settings.data_dir / "models"


def job_result(db: Database, settings: Settings, org_id: str, job_id: str) -> dict[str, Any]:
    """The result card, paths shown; NotFound until it exists, TrainingFailed for a failed job."""
    job = store.get_job(db, org_id, job_id)
    if job.result is None and job.status != JobStatus.FAILED.value:
        raise NotFound("result", job_id)
    view = views(db, settings, [job])[0]
    if job.result is not None:
        result: dict[str, Any] = view.paths.value(job.result)
        return result
    raise TrainingFailed(f"job {job_id} failed: {(view.error or {}).get('message', 'no result')}",
                         job_id=job_id, error=view.error)


def model_folder(db: Database, settings: Settings, job: Job) -> Path:
    """The trained model's folder for a completed job (NotFound before that)."""
    if job.output_model_id is not None:
        try:
            path = Path(models_store.get_trained_model(db, job.org_id, job.output_model_id).path)
        except NotFound:
            path = run_dir(settings, job.id) / "final"
    else:
        path = run_dir(settings, job.id) / "final"
    if not path.is_dir():
        if job.status == JobStatus.FAILED.value:
            view = views(db, settings, [job])[0]
            raise TrainingFailed(f"job {job.id} failed; it made no model", job_id=job.id, error=view.error)
        raise NotFound("model of job", job.id)
    return path
