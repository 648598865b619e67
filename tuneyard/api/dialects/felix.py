"""Fastino's Felix training jobs (reference document 000), at /felix.

`POST /felix/training-jobs` (base_model, datasets [{name}], name, method, epochs, learning_rate),
the list with `?status=` and `?project_id=`, one job (its `metrics` only once complete), its
`/logs`, `/checkpoints`, `/download`, `/stop`, `DELETE`, and `/felix/trained-models`. `GET
/base-models`, which the document also names, is the answer Fusion's dialect serves for both.

Jobs, checkpoints and models are shown by UUID; every route takes a native id too. `base_model`
is a base model's id or UUID, or a checkpoint's (or a trained model's) UUID or id: the job then
starts from that state's weights. Statuses are Felix's five words (statuses.FELIX). Errors are the
native envelope, a bad request 400 INVALID_REQUEST (http.render_envelope_400). Job creation is
rate-limited by the service (20 a minute per key, across API processes): 429 with Retry-After.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from tuneyard.api import conditional
from tuneyard.api.conditional import json_answer
from tuneyard.api.deps import Caller, Context, JobRead, OwnedJob
from tuneyard.api.dialects import statuses
from tuneyard.api.dialects.base import Dialect
from tuneyard.api.dialects.http import (
    BAD_REQUEST,
    RESPONSES,
    iso_z,
    json_body,
    listing,
    parse,
    render_envelope_400,
)
from tuneyard.api.errors import rate_limit_headers
from tuneyard.api.schemas.common import NOT_MODIFIED
from tuneyard.services import jobs, lookup, models, timeline
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.services.submission import JobRequest
from tuneyard.settings import Settings
from tuneyard.spec.text import DatasetName, Ident, Name, Reference
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, InvalidTransition
from tuneyard.store.jobs import JobQuery
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Job

DIALECT = "felix"
PREFIX = "/felix"
STATUS_NAMES = statuses.FELIX
FelixStatus = Literal["requested", "running", "complete", "failed", "stopped"]
"""Document 000's statuses (api/dialects/statuses.DOCUMENTED["felix"]), the filter's schema."""

router = APIRouter(prefix=PREFIX, tags=["felix"], responses=RESPONSES)


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: DatasetName = Field(description="A dataset of yours in the ready state.")


class FelixJobRequest(BaseModel):
    """POST /felix/training-jobs, as document 000 lists its fields (`project_id` is tuneyard's addition)."""

    model_config = ConfigDict(extra="forbid")

    base_model: Reference = Field(description="A base model id from GET /base-models, or a checkpoint UUID.")
    datasets: list[DatasetRef] = Field(min_length=1, max_length=16)
    name: Name | None = Field(None, description="The trained model's name; generated when left out.")
    method: Literal["lora", "full"] = "lora"
    epochs: int | None = Field(None, ge=1, le=1000, description="Defaults vary by base model.")
    learning_rate: float | None = Field(None, gt=0, le=1.0)
    project_id: Ident | None = Field(None, description="A project of yours, to filter the list by.")


# The services' field paths in Felix's words.
FIELD_NAMES = {"hyperparams.epochs": "epochs", "hyperparams.learning_rate": "learning_rate", "hyperparams": "epochs"}


@router.post("/training-jobs", status_code=status.HTTP_201_CREATED, responses=BAD_REQUEST,
             openapi_extra={"requestBody": json_body(FelixJobRequest)})
async def create_training_job(request: Request, context: Context, caller: Caller, response: Response
                              ) -> dict[str, Any]:
    """Submit a job: 201 with its UUID and `requested`; every problem of the request at once (400)."""
    body = await parse(request, FelixJobRequest)
    submitted = await anyio.to_thread.run_sync(_submit, context.db, context.settings, caller, body)
    rate = submitted.rate
    response.headers.update(rate_limit_headers(rate.limit, rate.remaining, rate.reset_after_s))
    return felix_job(submitted.job)


def _submit(db: Database, settings: Settings, caller: Any, body: FelixJobRequest) -> jobs.Submitted:
    hyperparams: dict[str, Any] = {}
    if body.epochs is not None:
        hyperparams["epochs"] = body.epochs
    if body.learning_rate is not None:
        hyperparams["learning_rate"] = body.learning_rate
    spec = {"type": "finetune", "base_model": lookup.model_reference(db, caller.org_id, body.base_model),
            "datasets": [{"name": d.name} for d in body.datasets], "method": body.method, "hyperparams": hyperparams}
    submitted = body.model_dump(mode="json", exclude_none=True)
    names = [d.name for d in body.datasets]
    job = JobRequest(spec=spec, name=body.name or f"felix-{secrets.token_hex(4)}", project_id=body.project_id,
                     submitted=submitted, dialect=DIALECT, labels={"base_model": body.base_model, "datasets": names})
    try:
        return jobs.submit_job(db, settings, caller, job)
    except InvalidRequest as refused:
        raise _in_felix_words(refused, names) from None


def _in_felix_words(refused: InvalidRequest, names: list[str]) -> InvalidRequest:
    """The service's problems with Felix's fields named: `datasets.0` is the first dataset, by name."""
    problems = []
    for problem in refused.problems:
        field = str(problem.get("field", ""))
        message = str(problem.get("message", ""))
        head, _, rest = field.partition(".")
        if head == "datasets" and rest.split(".")[0].isdigit() and int(rest.split(".")[0]) < len(names):
            index = int(rest.split(".")[0])
            field = f"datasets.{index}.name"
            if repr(names[index]) not in message:  # "no dataset 'x'" names it already
                message = f"dataset {names[index]!r}: {message}"
        else:
            field = FIELD_NAMES.get(field, field)
        problems.append({**problem, "field": field, "message": message})
    return InvalidRequest(problems)


@router.get("/training-jobs", responses={**BAD_REQUEST, **NOT_MODIFIED})  # 400: a status not in Felix's words
def list_training_jobs(
    context: Context, caller: Caller, request: Request,
    status_filter: Annotated[FelixStatus | None, Query(alias="status", description="One of Felix's statuses.")] = None,
    project_id: Annotated[Ident | None, Query(description="Only the jobs of this project.")] = None,
) -> Response:
    """All your training jobs, newest first. Its `ETag` changes with them: sent back as `If-None-Match`,
    a 304 while none has (as /v1/jobs)."""
    native: tuple[str, ...] = ()
    if status_filter is not None:  # one of FelixStatus: the schema refuses any other word, 400 naming status
        native = tuple(s.value for s in sorted(statuses.statuses_named(STATUS_NAMES, status_filter)))
    query = JobQuery(caller.org_id, native, project_id=project_id, limit=None)

    def answer() -> dict[str, Any]:
        found = jobs.list_jobs(context.db, context.settings, query).items
        return listing("training_jobs", [felix_job(v) for v in found])

    state = jobs.list_state(context.db, context.settings, query)
    return conditional.listing(request, caller.org_id, state, answer).response(json_answer)


@router.get("/training-jobs/{job_id}", responses=NOT_MODIFIED)
async def get_training_job(read: JobRead) -> Response:
    """Its status, configuration and, once complete, its metrics; `ETag` and `If-None-Match` as /v1/jobs/{id}."""
    def query(session: Any, job: Job) -> dict[str, Any]:
        view = jobs.view_in(session, read.settings, job)
        return felix_job(view, view.paths.value(job.result) if job.result is not None else None)
    answer = await read.unless_unchanged(query, varies=lambda s, job: jobs.waiting_reason(s, read.settings, job))
    return answer.response(json_answer)


@router.get("/training-jobs/{job_id}/logs", responses=NOT_MODIFIED)
async def get_logs(read: JobRead) -> Response:
    """The training log, oldest line first; `ETag` and `If-None-Match` as /v1/jobs/{id}/logs."""
    answer = await read.unless_unchanged(lambda session, job: listing("logs", [
        {"seq": line["seq"], "timestamp": line["ts"], "level": line["level"], "message": line["message"]}
        for line in timeline.shown_logs(session, read.settings, job)]))
    return answer.response(json_answer)


@router.get("/training-jobs/{job_id}/checkpoints", responses=NOT_MODIFIED)
async def get_checkpoints(read: JobRead) -> Response:
    """Saved checkpoints, each by UUID (a `base_model` for a new job) and step. `ETag` and `If-None-Match`
    as the job's: a checkpoint, and a pruning, is stored with a move of the job's revision."""
    answer = await read.unless_unchanged(lambda session, job: listing("checkpoints", [
        {"id": c.uuid, "training_job_id": job.uuid, "step": c.step, "metrics": c.metrics or {},
         "created_at": iso_z(c.created_at)} for c in timeline.checkpoints(session, job.id)]))
    return answer.response(json_answer)


@router.get("/training-jobs/{job_id}/download")
def get_download(job: OwnedJob, context: Context, request: Request) -> dict[str, Any]:
    """A URL of the trained weights as a .tar.gz (the same key fetches it); 409 until complete."""
    if job.status != JobStatus.COMPLETED.value:
        word = STATUS_NAMES[JobStatus(job.status)]
        raise Conflict(f"training job {job.uuid} is {word}: its weights can be downloaded once it is complete",
                       id=job.uuid, status=word)
    # The native download route: the same key fetches it, and it streams the weights as they are.
    return {"url": f"{str(request.base_url).rstrip('/')}/v1/jobs/{job.id}/download"}


@router.post("/training-jobs/{job_id}/stop")
def stop_training_job(job: OwnedJob, context: Context) -> dict[str, Any]:
    """Stop a running job: it checkpoints and becomes stopped; its checkpoints stay."""
    try:
        view = jobs.stop_job(context.db, context.settings, job.org_id, job.id)
    except InvalidTransition as refused:
        raise _refused(job, refused, "stopped") from None
    return felix_job(view)


@router.delete("/training-jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_training_job(job: OwnedJob, context: Context) -> Response:
    """Delete the job with its checkpoints and logs (204); it is then not found anywhere."""
    try:
        jobs.delete_job(context.db, context.settings, job.org_id, job.id)
    except InvalidTransition as refused:
        raise _refused(job, refused, "deleted", hint="stop it first") from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _refused(job: Job, refused: InvalidTransition, action: str, hint: str | None = None) -> Conflict:
    word = STATUS_NAMES[JobStatus(refused.current)]
    more = f"; {hint}" if hint else ""
    return Conflict(f"training job {job.uuid} is {word}: it cannot be {action}{more}", id=job.uuid, status=word)


@router.get("/trained-models")
def list_trained_models(context: Context, caller: Caller) -> dict[str, Any]:
    """Every model your jobs trained, newest first, across jobs."""
    found = models.list_models(context.db, caller.org_id)
    job_ids = [m.job_id for m in found if m.job_id]
    with context.db.read() as session:
        made_by = {row.id: row for row in session.execute(
            select(Job.id, Job.uuid, Job.name, Job.labels).where(Job.id.in_(job_ids)))} if job_ids else {}
    answer = []
    for model in found:
        job = made_by.get(model.job_id or "")
        asked = ((job.labels or {}).get(DIALECT) or {}) if job is not None else {}
        answer.append({
            "id": model.uuid, "name": (job.name if job is not None else None) or model.id,
            "training_job_id": job.uuid if job is not None else None,
            "base_model": asked.get("base_model", model.base_model),
            "method": (model.meta or {}).get("method", "full" if model.kind == "full" else "lora"),
            "created_at": iso_z(model.created_at)})
    return listing("trained_models", answer)


def felix_job(view: JobView, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """A job in Felix's words: its UUID, status word, the request's fields, the resolved config, and
    (only when complete) the metrics of its result."""
    asked = view.labels.get(DIALECT) or {}
    config = view.config
    hyperparams = config.get("hyperparams") or {}
    datasets = asked.get("datasets")
    shown: dict[str, Any] = {
        "id": view.uuid,
        "name": view.name,
        "status": STATUS_NAMES[view.status],
        "base_model": asked.get("base_model", view.spec.get("base_model")),
        "datasets": [{"name": n} for n in datasets] if datasets is not None else view.spec.get("datasets", []),
        "method": config.get("method", view.spec.get("method")),
        "epochs": hyperparams.get("epochs"),
        "learning_rate": hyperparams.get("learning_rate"),
        "project_id": view.project_id,
        "config": {"type": view.type, "method": config.get("method"), "hyperparams": hyperparams},
        "created_at": iso_z(view.created_at),
        "started_at": iso_z(view.started_at),
        "finished_at": iso_z(view.finished_at),
    }
    if view.status is JobStatus.FAILED and view.error:
        shown["error"] = view.error.get("message")
    if view.status is JobStatus.COMPLETED and result is not None:
        shown["metrics"] = {k: v for k, v in result.items()
                            if isinstance(v, int | float) and not isinstance(v, bool)}
    return shown


def dialect() -> Dialect:
    return Dialect(name=DIALECT, prefixes=(PREFIX,), router=router, render_error=render_envelope_400,
                   status_names=STATUS_NAMES)
