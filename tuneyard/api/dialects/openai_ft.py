"""OpenAI's fine-tuning API at /v1/fine_tuning/jobs, inside the native /v1, so the official `openai`
client given `base_url=http://host:port/v1` drives tuneyard: create, list, retrieve, cancel, pause,
resume, events and checkpoints (`openai_words` translates). Files are the native /v1/files, whose
objects are OpenAI's; a job's `training_file` becomes the dataset of that file (validated before the
job exists, so `validating_files` is never shown). Errors are OpenAI's envelope
`{"error": {message, type, param, code}}`, a request that does not validate a 400.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from tuneyard.api import conditional
from tuneyard.api.conditional import json_answer
from tuneyard.api.deps import AppContext, Caller, Context, JobRead, OwnedJob
from tuneyard.api.dialects import openai_words as words
from tuneyard.api.dialects import statuses
from tuneyard.api.dialects.base import Dialect
from tuneyard.api.dialects.http import validate
from tuneyard.api.dialects.translate import renamed
from tuneyard.api.errors import ApiError
from tuneyard.api.schemas.common import NOT_MODIFIED
from tuneyard.services import datasets, fine_tuned_names, jobs, lookup, submission, timeline
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.services.submission import JobRequest
from tuneyard.settings import Settings
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.jobs import JobQuery
from tuneyard.store.quotas import Quotas
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Job

NAME = "openai"
PREFIX = "/v1/fine_tuning"
STATUS_NAMES = statuses.OPENAI
LIST_LIMIT = 100
EVENTS_READ = 100_000
"""Every event and metric point of a job is read to page through it newest first."""

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "invalid_request_error", 409: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error"}


def render_error(_request: Request, error: ApiError) -> Response:
    """OpenAI's envelope; a request that does not validate is its 400, and `param` names the first
    field at fault (in OpenAI's words: `training_file`, `hyperparameters.n_epochs`, ...)."""
    status_code = 400 if error.status == 422 else error.status
    problems = error.details.get("problems") or []
    param = problems[0].get("field") if problems and isinstance(problems[0], dict) else error.details.get("field")
    if isinstance(param, str):  # FastAPI names a query parameter query.<name>; OpenAI names it alone
        param = param.removeprefix("query.").removeprefix("path.")
    message = error.message
    if problems:
        message = "; ".join(f"{p.get('field')}: {p.get('message')}" for p in problems[:5])
    body = {"error": {"message": message, "type": ERROR_TYPES.get(status_code, "server_error"),
                      "param": param, "code": error.code}}
    return JSONResponse(body, status_code=status_code, headers=error.headers)


class OpenAIErrorBody(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(BaseModel):
    """OpenAI's error envelope."""

    error: OpenAIErrorBody


def _documented(description: str) -> dict[str, Any]:
    return {"model": OpenAIError, "description": description}


INVALID: dict[int | str, dict[str, Any]] = {400: _documented(
    "invalid_request_error: the request (its body or its query) does not validate, or names a file, model or "
    "cursor that is missing or unusable; `param` names the field")}
"""Declared by each route that takes a body or a query: a bad one is OpenAI's 400, never 422 (so the
document drops FastAPI's own 422 there, `api/openapi._drop_fastapis_422`)."""

RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _documented("authentication_error: no API key, or one that is unknown or revoked"),
    404: _documented("invalid_request_error: no such job in the key's organization"),
    408: _documented("invalid_request_error: the request body stopped arriving"),
    409: _documented("invalid_request_error: the job's state does not allow it (a pause of a finished job)"),
    413: _documented("invalid_request_error: the body is over its size limit"),
    429: _documented("rate_limit_error: the job rate limit or a quota; see Retry-After"),
}
router = APIRouter(tags=["openai"], responses=RESPONSES)

CreateBody = Annotated[Any, Body(description="OpenAI's fine-tuning job: model, training_file, method, ...")]


@router.post("/v1/fine_tuning/jobs", status_code=status.HTTP_200_OK, responses=INVALID)
def create_job(body: CreateBody, context: Context, caller: Caller) -> dict[str, Any]:
    """Create a job; its files are checked (as the method's data) before it is queued."""
    try:
        request = validate(words.JobCreate, body)
    except InvalidRequest as exc:
        raise _by_field(exc) from None
    job_request = _job_request(context.db, context.settings, caller.org_id, request)
    try:
        submitted = jobs.submit_job(context.db, context.settings, caller, job_request)
    except InvalidRequest as exc:
        raise renamed(exc, words.FIELD_NAMES) from None
    return _object(context.db, submitted.job)


_TYPE_TAGS = {"int", "float", "str", "bool", "dict", "list", "none"}


def _by_field(error: InvalidRequest) -> InvalidRequest:
    """One problem per field: pydantic reports a value that fits no member of `"auto" | int` once per
    member, its location suffixed with the member's tag (`n_epochs.literal['auto']`, `n_epochs.int`)."""
    merged: dict[str, list[str]] = {}
    for problem in error.problems:
        parts = str(problem.get("field", "")).split(".")
        cut = next((i for i, p in enumerate(parts) if p in _TYPE_TAGS or any(c in p for c in "[(' ")), len(parts))
        messages = merged.setdefault(".".join(parts[:cut]) or "(body)", [])
        if problem.get("message") not in messages:
            messages.append(str(problem.get("message")))
    return InvalidRequest([{"field": field, "message": " or ".join(messages)} for field, messages in merged.items()])


def _job_request(db: Database, settings: Settings, org_id: str, body: words.JobCreate) -> JobRequest:
    """The finetune job a create body means. The files and the model are looked up first, every problem
    reported at once; only then is each file read as the method's data (its dataset made, or found from
    an earlier job), so a refused request leaves nothing behind."""
    problems: list[dict[str, str]] = []
    files = {"training_file": _file(db, org_id, body.training_file, "training_file", problems)}
    if body.validation_file is not None:
        files["validation_file"] = _file(db, org_id, body.validation_file, "validation_file", problems)
    try:
        base_model = fine_tuned_names.resolve(db, org_id, body.model)
    except NotFound:
        problems.append({"field": "model", "message": f"no model {body.model!r}"})
        base_model = body.model
    if problems:
        raise InvalidRequest(problems)
    fmt, method = words.DATA_FORMAT[body.method_type], words.TUNEYARD_METHOD[body.method_type]
    splits = {"training_file": "train", "validation_file": "eval"}
    refs = [{"id": _dataset(db, settings, org_id, file_id, fmt, field, problems), "split": splits[field]}
            for field, file_id in files.items()]
    if problems:
        raise InvalidRequest(problems)
    spec = {"type": "finetune", "base_model": base_model, "method": method, "datasets": refs,
            "hyperparams": words.hyperparams(body, _default_lr(db, settings, org_id, base_model, method))}
    # The job's stored spec is the native one (the worker, the console and /v1 read it); OpenAI's own
    # words (the model as named, suffix, metadata, file ids) are its labels.
    return JobRequest(spec=spec, name=body.suffix, dialect=NAME,
                      labels=words.labels(body, body.training_file, body.validation_file))


def _file(db: Database, org_id: str, ref: str, field: str, problems: list[dict[str, str]]) -> str:
    """The native id of the organization's file `ref` (an id or a UUID); another's is missing too."""
    try:
        return lookup.native_id(db, org_id, "file", ref)
    except NotFound:
        problems.append({"field": field, "message": f"no file {ref!r}"})
        return ref


def _dataset(db: Database, settings: Settings, org_id: str, file_id: str, fmt: str, field: str,
             problems: list[dict[str, str]]) -> str:
    """The id of the dataset of `file_id` read as `fmt`. A file that is not valid as `fmt` is a problem
    naming `field` with its first bad line, and its dataset is not kept."""
    dataset = datasets.dataset_of_file(db, org_id, file_id, fmt, quotas=Quotas.of(settings))
    if dataset.status == "invalid":
        first = (dataset.errors or [{}])[0]
        problems.append({"field": field, "message": f"not valid {fmt} data: {len(dataset.errors)} bad line(s), "
                                                    f"first line {first.get('line')}: {first.get('message')}"})
        datasets.delete_dataset(db, org_id, dataset.id)
    return dataset.id


def _default_lr(db: Database, settings: Settings, org_id: str, base_model: str, method: str) -> float | None:
    try:
        return float(submission.default_hyperparams(db, settings, org_id, base_model, method)["learning_rate"])
    except (NotFound, InvalidRequest, ValueError):
        return None  # the submission names the base model's problem


def _object(db: Database, view: JobView) -> dict[str, Any]:
    found = _objects(db, [view])
    if not found:  # deleted meanwhile
        raise NotFound("job", view.id)
    return found[0]


def _objects(db: Database, views: list[JobView]) -> list[dict[str, Any]]:
    """Each job's fine_tuning.job object, their rows (result, progress) read in one transaction."""
    if not views:
        return []
    with db.read() as session:
        rows = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_([v.id for v in views])))}
        return [_object_in(session, view, rows[view.id]) for view in views if view.id in rows]


def _object_in(session: Session, view: JobView, job: Job) -> dict[str, Any]:
    """The job's object from its row and its view, inside the caller's read: the tokens of its result,
    and (running, with an ETA) when its progress was reported."""
    tokens = (job.result or {}).get("tokens_processed") if view.status is JobStatus.COMPLETED else None
    timed = view.status is JobStatus.RUNNING and view.progress.eta_s is not None
    return words.job_object(view, STATUS_NAMES, tokens, timeline.progress_time(session, job) if timed else None)


_METADATA = re.compile(r"^metadata\[(?P<key>[^\]]{1,64})\]$")


@router.get("/v1/fine_tuning/jobs", responses={**INVALID, **NOT_MODIFIED})
def list_jobs(
    request: Request, context: Context, caller: Caller,
    after: Annotated[str | None, Query(max_length=128, description="The last job id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = 20,
) -> Response:
    """Your jobs, newest first; `metadata[k]=v` keeps those whose metadata has k = v. Its `ETag` changes
    with them: sent back as `If-None-Match`, a 304 while none has (as /v1/jobs)."""
    wanted = {m["key"]: v for k, v in request.query_params.items() if (m := _METADATA.match(k))}
    cursor = None
    if after is not None:
        try:
            cursor = jobs.cursor_after(context.db, caller.org_id, lookup.native_id(context.db, caller.org_id, "job",
                                                                                     after))
        except NotFound:
            raise InvalidRequest([{"field": "after", "message": f"no job {after!r}"}]) from None
    # Which jobs a metadata filter keeps is in their labels, whose every change moves their revision: with
    # one, the validator names every job after the cursor (ids and revisions only), as the filter reads them.
    query = JobQuery(caller.org_id, cursor=cursor, limit=None if wanted else limit)
    state = jobs.list_state(context.db, context.settings, query)
    answer = conditional.listing(request, caller.org_id, state, lambda: _jobs_page(context, query, wanted, limit))
    return answer.response(json_answer)


def _jobs_page(context: AppContext, query: JobQuery, wanted: dict[str, str], limit: int) -> dict[str, Any]:
    found: list[JobView] = []
    cursor = query.cursor
    while True:
        page = jobs.list_jobs(context.db, context.settings, replace(query, cursor=cursor, limit=LIST_LIMIT))
        found += [v for v in page.items if _has_metadata(v, wanted)]
        cursor = page.next_cursor
        if len(found) > limit or cursor is None:
            break
    return {"object": "list", "data": _objects(context.db, found[:limit]), "has_more": len(found) > limit}


def _has_metadata(view: JobView, wanted: dict[str, str]) -> bool:
    own = (view.labels.get(words.DIALECT) or {}).get("metadata") or {}
    return all(own.get(k) == v for k, v in wanted.items())


@router.get("/v1/fine_tuning/jobs/{job_id}", responses=NOT_MODIFIED)
async def retrieve_job(read: JobRead) -> Response:
    """The job; `ETag` and `If-None-Match` as /v1/jobs/{id} (a 304 while it has not changed)."""
    answer = await read.unless_unchanged(
        lambda session, job: _object_in(session, jobs.view_in(session, read.settings, job), job))
    return answer.response(json_answer)


@router.post("/v1/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job: OwnedJob, context: Context) -> dict[str, Any]:
    view = jobs.cancel_job(context.db, context.settings, job.org_id, job.id)
    return _object(context.db, view)


@router.post("/v1/fine_tuning/jobs/{job_id}/pause")
def pause_job(job: OwnedJob, context: Context) -> dict[str, Any]:
    """Stop at the next step with a checkpoint: `pausing`, then `paused`."""
    return _object(context.db, jobs.stop_job(context.db, context.settings, job.org_id, job.id))


@router.post("/v1/fine_tuning/jobs/{job_id}/resume")
def resume_job(job: OwnedJob, context: Context) -> dict[str, Any]:
    """A paused job back in the queue, to go on from its last checkpoint."""
    return _object(context.db, jobs.resume_job(context.db, context.settings, job.org_id, job.id))


@router.get("/v1/fine_tuning/jobs/{job_id}/events", responses={**INVALID, **NOT_MODIFIED})
async def list_events(
    read: JobRead,
    after: Annotated[str | None, Query(max_length=128, description="The last event id of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = 20,
) -> Response:
    """The job's events (state changes, checkpoints, ...) and training steps, newest first; `ETag` and
    `If-None-Match` as /v1/jobs/{id}/events (every event and point moves the job's revision)."""
    def query(session: Any, job: Job) -> dict[str, Any]:
        shown = timeline.shown_events(session, read.settings, job, limit=EVENTS_READ)
        found = [words.event_object(f"{job.id}.e{ev['seq']}", _when(ev["created_at"]), _level(ev), ev["message"],
                                    ev["data"], "message") for ev in shown]
        for point in timeline.metrics(session, job.id, kind="train", limit=EVENTS_READ):
            loss = point.values.get("loss")
            message = f"Step {point.step}" + (f": training loss={loss:.4f}" if isinstance(loss, float) else "")
            found.append(words.event_object(f"{job.id}.m{point.step}", point.ts, "info", message,
                                            {"step": point.step, **point.values}, "metrics"))
        return _page(sorted(found, key=lambda e: (e["created_at"], e["id"]), reverse=True), after, limit)
    return (await read.unless_unchanged(query)).response(json_answer)


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest([{"field": "after", "message": f"no item {after!r} of this job"}])
        start = ids.index(after) + 1
    data = items[start:start + limit]
    return {"object": "list", "data": data, "has_more": start + limit < len(items)}


def _when(iso_text: str) -> datetime:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00"))


def _level(event: dict[str, Any]) -> words.Level:
    kind = str(event.get("type"))
    return "error" if kind == "failed" else "warn" if kind in ("warning", "retrying", "lease_expired") else "info"


@router.get("/v1/fine_tuning/jobs/{job_id}/checkpoints", responses={**INVALID, **NOT_MODIFIED})
async def list_checkpoints(
    read: JobRead,
    after: Annotated[str | None, Query(max_length=128, description="The last checkpoint id of the previous page.")]
    = None,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = 10,
) -> Response:
    """The job's checkpoints, newest first; each `fine_tuned_model_checkpoint` is a `model` for a new job.
    `ETag` and `If-None-Match` as the job's: a checkpoint, and a pruning, is stored with a revision move."""
    def query(session: Any, job: Job) -> dict[str, Any]:
        view = jobs.view_in(session, read.settings, job)
        return _page([words.checkpoint_object(c.id, c.created_at, view, c.step, c.metrics or {})
                      for c in reversed(timeline.checkpoints(session, job.id))], after, limit)
    return (await read.unless_unchanged(query)).response(json_answer)


def dialect() -> Dialect:
    return Dialect(name=NAME, prefixes=(PREFIX,), router=router, render_error=render_error,
                   status_names=STATUS_NAMES, nested_in=("native",))
