"""Job pages: the list (with live status and queue positions), the new-job form, one job's detail.

Pages are rendered from the same services the API uses; what changes while a page is open (status,
progress, charts, logs) is fetched by the page's script from the /v1 API with the session cookie.
"""

from __future__ import annotations

import json
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from tuneyard.api import conditional
from tuneyard.api.deps import ID_SHAPE, Context, checked_id
from tuneyard.console.auth import CurrentViewer
from tuneyard.console.hyperparams import form_fields
from tuneyard.console.job_forms import type_forms
from tuneyard.console.views import page
from tuneyard.problems import error_detail_lines
from tuneyard.scheduler.queue import queue_positions
from tuneyard.services import base_models, datasets, jobs, models, runs, templates, timeline
from tuneyard.services.job_view import JobView
from tuneyard.spec import JOB_TYPES, METHODS
from tuneyard.store import tenancy
from tuneyard.store.errors import NotFound
from tuneyard.store.jobs import JobQuery, Listed
from tuneyard.store.status import JobStatus

router = APIRouter(include_in_schema=False)

STATUSES = [s.value for s in JobStatus]
TYPES = list(JOB_TYPES.names())
PAGE_SIZE = 25

# Plain strings: the filter form sends "" for "any", which an enum-typed query would refuse.
StatusFilter = Annotated[str | None, Query(alias="status", max_length=20)]
TypeFilter = Annotated[str | None, Query(alias="type", max_length=20)]
ProjectFilter = Annotated[str | None, Query(max_length=40)]


def _blank_as_none(value: str | None) -> str | None:
    return value or None


def _one_of(value: str | None, allowed: list[str]) -> str | None:
    return value if value in allowed else None


def job_row(job: JobView, position: int | None) -> dict[str, Any]:
    """What a list row shows, and what its live refresh updates; `position`: its place in the queue."""
    return {"id": job.id, "name": job.name, "type": job.type, "status": job.status.value,
            "project_id": job.project_id, "created_at": job.created_at.isoformat(),
            "percent": job.progress.percent, "step": job.progress.step,
            "total_steps": job.progress.total_steps, "loss": job.loss, "queue_position": position,
            "base_model": job.spec.get("base_model"), "method": job.spec.get("method", "lora"),
            "cost_usd": job.cost_usd, "waiting": job.waiting}


def _rows(context: Context, found: list[JobView]) -> list[dict[str, Any]]:
    with context.db.read() as session:
        positions = queue_positions(session, [j.id for j in found if j.status is JobStatus.QUEUED])
    return [job_row(j, positions.get(j.id)) for j in found]


def _positions(session: Session, rows: list[Listed]) -> str:
    # A queued job's place moves as jobs ahead of it (any organization's) are claimed: not its revision.
    queued = [row.id for row in rows if row.status == JobStatus.QUEUED.value]
    return json.dumps(sorted(queue_positions(session, queued).items()))


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(request: Request, context: Context, viewer: CurrentViewer, status_: StatusFilter = None,
              type_: TypeFilter = None, project_id: ProjectFilter = None,
              cursor: Annotated[str | None, Query(max_length=512)] = None) -> HTMLResponse:
    status, type, project = _one_of(status_, STATUSES), _one_of(type_, TYPES), _blank_as_none(project_id)
    query = JobQuery(viewer.principal.org_id, (status,) if status else (), type, project,
                     cursor=_blank_as_none(cursor), limit=PAGE_SIZE)
    found = jobs.list_jobs(context.db, context.settings, query)
    projects = tenancy.list_projects(context.db, viewer.principal.org_id)
    filters = {"status": status or "", "type": type or "", "project_id": project or ""}
    return page(request, "jobs.html", viewer, rows=_rows(context, found.items),
                next_cursor=found.next_cursor, statuses=STATUSES, types=TYPES, projects=projects,
                filters=filters)


@router.get("/console/jobs.json")
def jobs_live(request: Request, context: Context, viewer: CurrentViewer,
              ids: Annotated[list[str], Query(max_length=PAGE_SIZE)]) -> Response:
    """Status, progress and queue position of the jobs a list page shows (its live refresh). Its ETag
    names them (`api/conditional.listing`): while none moved, the page's poll is a 304."""
    org_id = viewer.principal.org_id
    wanted = [job_id for job_id in ids if ID_SHAPE.match(job_id)]
    query = JobQuery(org_id, ids=tuple(dict.fromkeys(wanted)), limit=None)

    def rows() -> dict[str, Any]:
        found = {row["id"]: row for row in _rows(context, jobs.list_jobs(context.db, context.settings, query).items)}
        return {"data": [found.get(job_id, {"id": job_id, "status": "deleted"}) for job_id in wanted]}

    state = jobs.list_state(context.db, context.settings, query, varies=_positions)
    return conditional.listing(request, org_id, state, rows).response(conditional.json_answer)


@router.get("/jobs/new", response_class=HTMLResponse)
def new_job_page(request: Request, context: Context, viewer: CurrentViewer, base_model: str | None = None,
                 dataset: str | None = None, template: Annotated[str | None, Query(max_length=64)] = None,
                 ) -> HTMLResponse:
    """The form starts from `template` when given (its script fills the fields from the option's spec)."""
    org_id = viewer.principal.org_id
    # One key per rendered form: resubmitting this form (a double click, a retry after a network
    # error) is the same request to the API, which returns the job it already made.
    return page(request, "job_new.html", viewer, idempotency_key=f"console-{secrets.token_urlsafe(18)}",
                base_models=base_models.list_base_models(context.db, org_id),
                trained_models=models.list_models(context.db, org_id),
                datasets=datasets.list_datasets(context.db, org_id),
                projects=tenancy.list_projects(context.db, org_id), fields=form_fields(),
                methods=[m for m in METHODS if not m.unavailable()], type_forms=type_forms(),
                templates=templates.list_templates(context.db, org_id), chosen_template=template,
                chosen_base=base_model, chosen_dataset=dataset)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, context: Context, viewer: CurrentViewer, job_id: str) -> HTMLResponse:
    try:
        wanted = job_id if ID_SHAPE.match(job_id) else "-"
        job = jobs.get_job(context.db, context.settings, viewer.principal.org_id, wanted)
    except NotFound:
        return page(request, "not_found.html", viewer, 404, what=f"job {job_id}")
    error_lines = error_detail_lines((job.error or {}).get("details"))
    return page(request, "job_detail.html", viewer, job=job, error_lines=error_lines)


@router.get("/console/jobs/{job_id}/checkpoints/{checkpoint_id}/download")
def download_checkpoint(context: Context, viewer: CurrentViewer, job_id: str, checkpoint_id: str) -> Response:
    """One checkpoint folder as a .tar.gz (the API serves its files one by one; people want one file)."""
    job = jobs.get_job(context.db, context.settings, viewer.principal.org_id, checked_id("job", job_id))
    with context.db.read() as session:
        found = [c for c in timeline.checkpoints(session, job.id) if c.id == checkpoint_id]
    if not found:
        raise NotFound("checkpoint", checkpoint_id[:64])
    root = runs.run_dir(context.settings, job.id).resolve()
    folder = (root / found[0].path).resolve()  # an absolute path stays itself; it must still be inside
    if not folder.is_relative_to(root) or not folder.is_dir():
        raise NotFound("checkpoint", checkpoint_id)
    name = f"{job.id}-step-{found[0].step}"
    headers = {"Content-Disposition": f'attachment; filename="{name}.tar.gz"'}
    return StreamingResponse(runs.stream_tar_gz(folder, name), media_type="application/gzip", headers=headers)
