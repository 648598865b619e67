"""Documents 002 (a local "Training API") and 003 (an agent's training API), both at /api/training.

One dialect owns the prefix, as both documents' jobs live at /api/training/jobs. This module serves
002's endpoints: a POST body in 002's words (`base_model`, `dataset_path`, ...; `training_words`),
the list, one job with its status and progress, DELETE = cancel, `/logs?tail=N`, `/output` and
`/output/{file}`, `/merge`, `/resume` (HF Trainer's `checkpoint-N` or a native checkpoint id),
`/templates` and `/stats`. Answers carry 002's fields with a `job` object in 003's
shape beside them (`{"job": {...}}`), so a client of either reads what it expects. Errors are the
native envelope with 400 INVALID_REQUEST for a bad request (both documents' table), 404 NOT_FOUND,
401 UNAUTHORIZED. Job ids are native (`job_...`); UUIDs are taken too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import FileResponse

from tuneyard.api import conditional
from tuneyard.api.conditional import json_answer
from tuneyard.api.deps import AppContext, Caller, Context, JobRead, OwnedJob
from tuneyard.api.dialects import agent_data, agent_training, statuses
from tuneyard.api.dialects.agent_words import NAMES as AGENT_NAMES
from tuneyard.api.dialects.agent_words import AgentTrainingJob, job_object, which_document
from tuneyard.api.dialects.base import Dialect
from tuneyard.api.dialects.http import listing, parse, read_json, render_envelope_400, validate
from tuneyard.api.dialects.training_words import DIALECT, NAMES, LocalTrainingJob, checkpoint_ref
from tuneyard.api.dialects.translate import renamed, split_secrets
from tuneyard.api.schemas.common import ERROR_RESPONSES, NOT_MODIFIED
from tuneyard.services import (
    dataset_paths,
    datasets,
    estimates,
    files,
    jobs,
    lookup,
    model_ops,
    runs,
    stats,
    templates,
    timeline,
)
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.services.submission import JobRequest, plan_job
from tuneyard.services.templates import TemplateBody
from tuneyard.store import telemetry
from tuneyard.store.jobs import JobQuery
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Dataset, Job
from tuneyard.store.tenancy import Principal

PREFIX = "/api/training"
LOCAL = statuses.LOCAL_TRAINING
AGENT = statuses.AGENT_TRAINING
MB = 1024 * 1024

RESPONSES = {code: shape for code, shape in ERROR_RESPONSES.items() if code != 422}
BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {**ERROR_RESPONSES[422], "description": (
    "INVALID_REQUEST: the body is not JSON, or the body or the query does not validate; `details.problems` "
    "names every field at fault")}}

router = APIRouter(prefix=PREFIX, tags=["training"], responses=RESPONSES)


def _answer(view: JobView) -> dict[str, Any]:
    """002's fields for one job, and 003's job object beside them."""
    progress = view.progress
    config = dict((view.labels.get(DIALECT) or {}).get("config") or {})
    return {"job_id": view.id, "status": LOCAL[view.status], "config": config,
            "progress": {"step": progress.step, "total_steps": progress.total_steps, "percent": progress.percent,
                         "epoch": progress.epoch, "eta_s": progress.eta_s, "loss": view.loss},
            "error": view.error, "job": job_object(view)}


JOB_BODY = {"content": {"application/json": {"schema": {"oneOf": [
    LocalTrainingJob.model_json_schema(ref_template="#/components/schemas/{model}"),
    AgentTrainingJob.model_json_schema(ref_template="#/components/schemas/{model}")]}}}, "required": True}


@router.post("/jobs", status_code=status.HTTP_201_CREATED, responses=BAD_REQUEST,
             openapi_extra={"requestBody": JOB_BODY})
async def submit_job(request: Request, context: Context, caller: Caller) -> dict[str, Any]:
    """Submit a job in document 002's words (`base_model`, `dataset_path`, ...) or 003's (`datasetId`,
    `backend`, `model`, `iterations`, ...), told apart by its fields (`agent_words.which_document`; a
    body with fields of both is 400 naming them): `{"job_id", "status": "pending", "config", "job"}`.
    The body is read as JSON whatever its Content-Type; the whole of it is checked before anything is made."""
    data = await read_json(request)
    if which_document(data) == "003":
        agent = validate(AgentTrainingJob, data, AGENT_NAMES)
        view = await anyio.to_thread.run_sync(agent_training.submit, agent, context, caller)
        return _answer(view)
    body = validate(LocalTrainingJob, data, NAMES)
    return await anyio.to_thread.run_sync(_submit, body, context, caller)


def _submit(body: LocalTrainingJob, context: AppContext, caller: Principal) -> dict[str, Any]:
    db, settings = context.db, context.settings
    model, labels, stored, secrets = _checked(body, context, caller)
    dataset = dataset_paths.dataset_for_path(db, settings, caller.org_id, body.dataset_path,
                                             hub_token=secrets.get("hf_token"))
    job = JobRequest(spec=body.spec(model, dataset.id), name=body.run_name, dialect=DIALECT, labels=labels,
                     secrets=secrets, submitted={**stored, "dataset_id": dataset.id})
    try:
        submitted = jobs.submit_job(db, settings, caller, job)
    except BaseException as exc:
        _discard(context, caller.org_id, dataset)  # a refused request keeps no copy of its data
        if isinstance(exc, InvalidRequest):
            raise renamed(exc, NAMES) from None
        raise
    answer = _answer(submitted.job)
    warnings = body.warnings()
    return {**answer, **({"warnings": warnings} if warnings else {})}


def _checked(body: LocalTrainingJob, context: AppContext,
             caller: Principal) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, str]]:
    """Everything of a 002 body but its data, checked as a submission: (base model, labels, what may
    be stored, secrets). First, so a bad request copies no file and makes no dataset."""
    db, settings = context.db, context.settings
    problems: list[dict[str, Any]] = []
    try:
        dataset_paths.locate(settings, body.dataset_path)  # a hub dataset is fetched once all else passed
    except InvalidRequest as exc:
        problems.extend(exc.problems)
    model = lookup.model_reference(db, caller.org_id, body.base_model)
    stored, secrets = split_secrets(body)
    labels = {"config": body.shown_config()}
    check = JobRequest(spec=body.spec(model, None), name=body.run_name, problems=tuple(problems),
                       dialect=DIALECT, labels=labels, secrets=secrets, submitted=stored)
    try:
        plan_job(db, settings, caller.org_id, check)
    except InvalidRequest as exc:
        left = [p for p in exc.problems if not str(p["field"]).startswith("datasets")]
        if left:
            raise renamed(InvalidRequest(left), NAMES) from None
    return model, labels, stored, secrets


@router.post("/estimate", responses=BAD_REQUEST, openapi_extra={"requestBody": {
    "content": {"application/json": {"schema": LocalTrainingJob.model_json_schema(
        ref_template="#/components/schemas/{model}")}}, "required": True}})
async def estimate(request: Request, context: Context, caller: Caller) -> dict[str, Any]:
    """Memory, time and cost of the job a 002 body would submit (`services/estimates.py`): the peak
    memory by component, steps and tokens, seconds calibrated on this server's finished jobs, and
    cost. The body is checked exactly as POST /jobs checks it; nothing is queued or kept."""
    body = validate(LocalTrainingJob, await read_json(request), NAMES)
    return await anyio.to_thread.run_sync(_estimate, body, context, caller)


def _estimate(body: LocalTrainingJob, context: AppContext, caller: Principal) -> dict[str, Any]:
    db, settings = context.db, context.settings
    model, _labels, stored, secrets = _checked(body, context, caller)
    # The run's length needs the file's examples and tokens, which a dataset's validation counts:
    # the file is read in as a submission would read it, and that copy is removed once estimated.
    dataset = dataset_paths.dataset_for_path(db, settings, caller.org_id, body.dataset_path,
                                             hub_token=secrets.get("hf_token"))
    try:
        request = JobRequest(spec=body.spec(model, dataset.id), name=body.run_name, dialect=DIALECT,
                             secrets=secrets, submitted=stored)
        try:
            found = estimates.estimate_job(db, settings, caller.org_id, request)
        except InvalidRequest as exc:
            raise renamed(exc, NAMES) from None
    finally:
        _discard(context, caller.org_id, dataset)
    return {**found, "base_model": body.base_model, "config": body.shown_config()}


def _discard(context: AppContext, org_id: str, dataset: Dataset) -> None:
    """Remove the dataset `dataset_path` was copied into, and its files."""
    datasets.delete_dataset(context.db, org_id, dataset.id)
    for file_id in dataset.file_ids:
        files.delete_file(context.db, org_id, file_id)


@router.get("/jobs", responses=NOT_MODIFIED)
def list_jobs(context: Context, caller: Caller, request: Request) -> Response:
    """Every job, newest first: 003's job objects, each with 002's `job_id` and status. Its `ETag`
    changes with them: sent back as `If-None-Match`, a 304 while none has (as /v1/jobs)."""
    query = JobQuery(caller.org_id, limit=100)

    def answer() -> dict[str, Any]:
        found = jobs.list_jobs(context.db, context.settings, query).items
        return listing("jobs", [{**job_object(v), "job_id": v.id, "state": LOCAL[v.status]} for v in found])

    state = jobs.list_state(context.db, context.settings, query)
    return conditional.listing(request, caller.org_id, state, answer).response(json_answer)


@router.get("/jobs/{job_id}", responses=NOT_MODIFIED)
async def get_job(read: JobRead) -> Response:
    """The job's status and progress (002), and `job` (003: progress 0–1, iterations, loss). Its `ETag`
    changes with the job: sent back as `If-None-Match`, a 304 while nothing has (as /v1/jobs/{id})."""
    # 003's `waitingReason` depends on the live workers, not on the row: part of the validator, as natively.
    answer = await read.unless_unchanged(lambda s, job: _answer(jobs.view_in(s, read.settings, job)),
                                         varies=lambda s, job: jobs.waiting_reason(s, read.settings, job))
    return answer.response(json_answer)


@router.delete("/jobs/{job_id}")
def cancel_job(job: OwnedJob, context: Context) -> dict[str, Any]:
    """Cancel the job (002's DELETE); its record stays."""
    return _answer(jobs.cancel_job(context.db, context.settings, job.org_id, job.id))


@router.get("/jobs/{job_id}/logs", responses={**BAD_REQUEST, **NOT_MODIFIED})
async def tail_logs(read: JobRead,
                    tail: Annotated[int, Query(ge=1, le=100_000)] = 100) -> Response:
    """The last `tail` log lines, oldest first; `ETag` and `If-None-Match` as /v1/jobs/{id}/logs."""
    def query(session: Any, job: Job) -> dict[str, Any]:
        lines = timeline.shown_logs(session, read.settings, job, tail=tail)
        return {"job_id": job.id, "lines": [line["message"] for line in lines], "logs": lines}
    return (await read.unless_unchanged(query)).response(json_answer)


@router.get("/jobs/{job_id}/output")
def list_output(job: OwnedJob, context: Context, request: Request) -> dict[str, Any]:
    """The trained model's files, each with a URL that downloads it (404 until the model exists)."""
    folder = jobs.model_folder(context.db, context.settings, job)
    found = [a for a in runs.list_artifacts(folder) if "/" not in a.path]
    files = [{"name": a.path, "size_mb": round(a.bytes / MB, 2),
              "download_url": str(request.url_for("download_output", job_id=job.id, file=a.path))} for a in found]
    return {"job_id": job.id, "status": LOCAL[JobStatus(job.status)], "files": files, "total_files": len(files),
            "total_size_mb": round(sum(a.bytes for a in found) / MB, 2)}


@router.get("/jobs/{job_id}/output/{file}", response_class=FileResponse)
def download_output(job: OwnedJob, context: Context, file: str) -> Response:
    """One file of the trained model; a name that leaves the folder is not found."""
    folder = jobs.model_folder(context.db, context.settings, job)
    target = runs.safe_child(folder, file)
    return FileResponse(target, filename=Path(target).name, media_type="application/octet-stream")


@router.post("/jobs/{job_id}/merge", status_code=status.HTTP_201_CREATED)
def merge(job: OwnedJob, context: Context, caller: Caller) -> dict[str, Any]:
    """Fold the completed LoRA job's adapter into its base: `{"merge_job_id"}`, a job to poll."""
    request = JobRequest(spec=model_ops.merge_body(context.db, job), dialect=DIALECT)
    submitted = jobs.submit_job(context.db, context.settings, caller, request)
    return {"merge_job_id": submitted.job.id, "status": LOCAL[submitted.job.status], "job": job_object(submitted.job)}


RESUME_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "properties": {"checkpoint": {
        "type": "string",
        "description": "HF Trainer's `checkpoint-N` (step N) or a checkpoint id; none: the latest"}}}}}}


@router.post("/jobs/{job_id}/resume", responses=BAD_REQUEST, openapi_extra={"requestBody": RESUME_BODY})
async def resume(job: OwnedJob, context: Context, request: Request) -> dict[str, Any]:
    """Queue a stopped, cancelled or failed job again from its latest checkpoint, or from
    `{"checkpoint": "checkpoint-500"}` (step 500) or a checkpoint id. The body is JSON whatever its
    Content-Type (002's printed curl sends a form type)."""
    body = await read_json(request, empty={})
    if not isinstance(body, dict) or set(body) - {"checkpoint"} or not isinstance(body.get("checkpoint", ""), str):
        raise InvalidRequest([{"field": "checkpoint", "message": 'expected {"checkpoint": "checkpoint-N"} or no body'}])
    return await anyio.to_thread.run_sync(_resume, job, context, body.get("checkpoint"))


def _resume(job: Job, context: AppContext, name: str | None) -> dict[str, Any]:
    checkpoint = None
    if name:
        kind, step = checkpoint_ref(name)
        with context.db.read() as session:
            found = telemetry.read_checkpoints(session, job.id)
        match = [c for c in found if (c.step == step if kind == "step" else name in (c.id, c.uuid))]
        if not match:
            have = ", ".join(f"checkpoint-{c.step}" for c in found) or "none"
            message = f"no checkpoint {name!r} of this job; it has {have}"
            raise InvalidRequest([{"field": "checkpoint", "message": message}])
        checkpoint = match[0].id
    return _answer(jobs.resume_job(context.db, context.settings, job.org_id, job.id, checkpoint))


@router.get("/templates")
def list_templates(context: Context, caller: Caller) -> dict[str, Any]:
    """The built-in templates, then your own."""
    return listing("templates", templates.list_templates(context.db, caller.org_id))


@router.post("/templates", status_code=status.HTTP_201_CREATED, responses=BAD_REQUEST,
             openapi_extra={"requestBody": {"content": {"application/json": {
                 "schema": TemplateBody.model_json_schema(ref_template="#/components/schemas/{model}")}}}})
async def save_template(request: Request, context: Context, caller: Caller) -> dict[str, Any]:
    """Save a custom template: `{name, description, spec}` (a partial job spec)."""
    body = await parse(request, TemplateBody)
    return await anyio.to_thread.run_sync(templates.save_template, context.db, caller.org_id, body)


@router.get("/stats")
def get_stats(context: Context, caller: Caller) -> dict[str, Any]:
    """Counters: jobs by status (002's words and tuneyard's), models, datasets, queue, live workers."""
    found = stats.org_stats(context.db, context.settings, caller.org_id)
    words: dict[str, int] = {}
    for native, count in found.jobs_by_status.items():
        word = LOCAL[JobStatus(native)]
        words[word] = words.get(word, 0) + count
    return {"jobs": words, "jobs_by_status": found.jobs_by_status, "total_jobs": sum(words.values()),
            "models": found.models, "datasets": found.datasets, "queue_depth": found.queue_depth,
            "workers_alive": found.workers_alive}


def dialect() -> Dialect:
    """002's routes and 003's (`agent_data`, `agent_training`) under the one prefix both documents use."""
    served = APIRouter(responses=RESPONSES)
    served.include_router(router)
    served.include_router(agent_data.router, prefix=PREFIX)
    served.include_router(agent_training.router, prefix=PREFIX)
    return Dialect(name=DIALECT, prefixes=(PREFIX,), router=served, render_error=render_envelope_400,
                   status_names=LOCAL)
