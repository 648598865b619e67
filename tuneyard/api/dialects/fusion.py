"""The Fusion Training Console's API (reference document 001): jobs and runs at the root of the server.

`POST /jobs` takes its three run types (train, finetune, contract; `fusion_words` translates them),
`GET /jobs`, `/jobs/{id}` and its `/metrics`, `/logs`, `/events`, `/result`, `POST /training/recommend`,
and the lists `GET /base-models` (shared with Felix, whose document names the same path: one answer
for both), `/models` and `/datasets`. Ids shown are UUIDs; every route also takes native ids. Errors
are the native envelope, a request that does not validate a 400 (as the /api/training documents
say), not the native 422. Statuses are tuneyard's own words (001 prints `queued` and no table).

The console serves HTML pages at /jobs, /models and /datasets too: a browser's page request (a GET
without an Authorization header that accepts text/html or carries the console's session cookie) is
the console's, anything else is Fusion's (`FusionRoute`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request, Response, status
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.routing import Match
from starlette.types import Scope

from tuneyard.api import conditional
from tuneyard.api.conditional import json_answer
from tuneyard.api.deps import AppContext, Caller, Context, JobRead, OwnedJob
from tuneyard.api.dialects import statuses
from tuneyard.api.dialects.base import Dialect
from tuneyard.api.dialects.fusion_words import (
    DIALECT,
    FusionRun,
    job_object,
    log_line,
    metric_point,
    result_card,
    run_request,
    timeline_event,
)
from tuneyard.api.dialects.http import iso_z, listing, parse, read_json, render_envelope_400
from tuneyard.api.dialects.translate import renamed
from tuneyard.api.errors import rate_limit_headers
from tuneyard.api.routes.job_timeline import POSITION_MAX
from tuneyard.api.schemas.common import ERROR_RESPONSES, NOT_MODIFIED
from tuneyard.console.sessions import COOKIE_NAME
from tuneyard.services import base_models, datasets, jobs, lookup, models, recommendations, timeline
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.services.recommendations import RecommendRequest
from tuneyard.spec.text import Ident
from tuneyard.store import uuids
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.jobs import JobQuery, Listed
from tuneyard.store.tables import Job
from tuneyard.store.tenancy import Principal

PREFIXES = ("/jobs", "/training", "/base-models", "/models", "/datasets")
STATUS_NAMES = statuses.FUSION
SESSION_COOKIE = f"{COOKIE_NAME}=".encode()
LOG_TAIL = 1000
"""The most console lines one /logs answer carries: 001 caps its tail "to the most recent lines"."""
LIST_LIMIT = 100

RESPONSES = {code: shape for code, shape in ERROR_RESPONSES.items() if code != 422}
"""Any route's answers: the native ones, less the 422 that Fusion answers 400."""
BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {**ERROR_RESPONSES[422], "description": (
    "INVALID_REQUEST: the body is not JSON, or the body or the query does not validate; `details.problems` "
    "names every field at fault")}}
"""Answered by a route with a body or a query."""


def _console_page(scope: Scope) -> bool:
    """A GET without a key that a browser sends for a page: it accepts HTML or carries the console's
    session cookie (which only the console turns into a key, and only for /v1)."""
    if scope.get("method") not in ("GET", "HEAD"):
        return False
    headers = dict(scope.get("headers") or [])
    if b"authorization" in headers:
        return False
    return b"text/html" in headers.get(b"accept", b"") or SESSION_COOKIE in headers.get(b"cookie", b"")


class FusionRoute(APIRoute):
    """A Fusion route that leaves a browser's page request to the console's page at the same path."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http" and _console_page(scope):
            return Match.NONE, {}
        return super().matches(scope)


router = APIRouter(tags=["fusion"], responses=RESPONSES, route_class=FusionRoute)

RUN_BODY = {"content": {"application/json": {"schema": {
    **FusionRun.model_json_schema(ref_template="#/components/schemas/{model}"),
    "examples": [{"type": "train", "idempotency_key": "run-1", "base_model_id": "<uuid>", "dataset_id": "<uuid>",
                  "hyperparams": {"turns": 2, "output_name": "my-model"}}]}}}, "required": True}


@router.post("/jobs", status_code=status.HTTP_201_CREATED, openapi_extra={"requestBody": RUN_BODY},
             responses={200: {"description": "A retry with the same idempotency key: the same job."}, **BAD_REQUEST})
async def submit_run(request: Request, context: Context, caller: Caller, response: Response) -> dict[str, Any]:
    """Submit a run; the job comes back at once, `queued`. The whole body is checked first (400 naming
    every field at fault). The body is read as JSON whatever its Content-Type."""
    body = await read_json(request)
    return await anyio.to_thread.run_sync(_submit, body, context, caller, response)


def _submit(body: Any, context: AppContext, caller: Principal, response: Response) -> dict[str, Any]:
    run, names = run_request(body, _resolver(context.db, caller.org_id))
    try:
        submitted = jobs.submit_job(context.db, context.settings, caller, run)
    except InvalidRequest as exc:
        raise renamed(exc, names) from None
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    rate = submitted.rate
    response.headers.update(rate_limit_headers(rate.limit, rate.remaining, rate.reset_after_s))
    return _objects(context.db, [submitted.job])[0]


def _resolver(db: Database, org_id: str) -> Callable[[str, str], str]:
    """Native ids for the ids a body names; one that names nothing is passed on for the service to
    refuse, naming the field."""
    def resolve(kind: str, ref: str) -> str:
        try:
            if kind == "dataset":
                return lookup.native_id(db, org_id, "dataset", ref)
            return lookup.model_reference(db, org_id, ref)
        except NotFound:
            return ref
    return resolve


def _objects(db: Database, views: list[JobView]) -> list[dict[str, Any]]:
    """Job objects, their output models named by UUID (one read for all of them)."""
    ids = [v.output_model_id for v in views if v.output_model_id]
    with db.read() as session:
        model_uuids = uuids.uuids_of(session, "model", ids)
    return [job_object(v, model_uuids.get(v.output_model_id or ""), STATUS_NAMES, iso_z) for v in views]


@router.get("/jobs", responses={**BAD_REQUEST, **NOT_MODIFIED})
def list_runs(
    context: Context, caller: Caller, request: Request,
    limit: Annotated[int, Query(ge=1, le=LIST_LIMIT)] = LIST_LIMIT,
    cursor: Annotated[str | None, Query(max_length=512, pattern=r"^[A-Za-z0-9_-]+$")] = None,
) -> Response:
    """Your jobs, newest first: `{"jobs": [...], "next_cursor"}` (pass it as `cursor` for more). Its
    `ETag` changes with them: sent back as `If-None-Match`, a 304 while none has (as /v1/jobs)."""
    query = JobQuery(caller.org_id, cursor=cursor, limit=limit)

    def answer() -> dict[str, Any]:
        page = jobs.list_jobs(context.db, context.settings, query)
        return {"jobs": _objects(context.db, page.items), "next_cursor": page.next_cursor}

    state = jobs.list_state(context.db, context.settings, query, varies=_model_uuids)
    return conditional.listing(request, caller.org_id, state, answer).response(json_answer)


def _model_uuids(session: Session, rows: list[Listed]) -> str:
    # Models are shown by UUID, gone when a model is deleted without its job's revision moving (as get_run).
    ids = [row.output_model_id for row in rows if row.output_model_id]
    return json.dumps(sorted(uuids.uuids_of(session, "model", ids).items())) if ids else ""


@router.get("/jobs/{job_id}", responses=NOT_MODIFIED)
async def get_run(read: JobRead) -> Response:
    """One job object; `ETag` and `If-None-Match` as /v1/jobs/{id}."""
    def model_uuid(session: Any, job: Job) -> str:
        # Its model is shown by the model's UUID, gone with a deletion of the model that leaves the job's
        # revision where it was: part of the validator (one read by key, no telemetry).
        ids = [job.output_model_id] if job.output_model_id else []
        return uuids.uuids_of(session, "model", ids).get(job.output_model_id or "", "")

    answer = await read.unless_unchanged(
        lambda s, job: job_object(jobs.view_in(s, read.settings, job), model_uuid(s, job) or None, STATUS_NAMES,
                                  iso_z),
        varies=model_uuid)
    return answer.response(json_answer)


@router.get("/jobs/{job_id}/metrics", responses={**BAD_REQUEST, **NOT_MODIFIED})
async def run_metrics(read: JobRead, since_step: Annotated[int, Query(ge=-1, le=POSITION_MAX)] = -1,
                      limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000) -> Response:
    """Training points with step > `since_step`, by step; `latest_step` is what to pass next time. `ETag` and
    `If-None-Match` as /v1/jobs/{id}/metrics."""
    def query(session: Any, job: Job) -> dict[str, Any]:
        per_cycle = ((job.config or {}).get("hyperparams") or {}).get("steps_per_cycle")
        found = timeline.metrics(session, job.id, since_step, "train", limit)
        points = [metric_point(p, per_cycle if job.type == "train" else None, iso_z) for p in found]
        latest = points[-1]["step"] if points else max(since_step, 0)
        return {"job_id": job.uuid, "count": len(points), "latest_step": latest, "points": points}
    return (await read.unless_unchanged(query)).response(json_answer)


@router.get("/jobs/{job_id}/logs", responses={**BAD_REQUEST, **NOT_MODIFIED})
async def run_logs(read: JobRead,
                   since: Annotated[int, Query(ge=0, le=POSITION_MAX)] = 0) -> Response:
    """Console lines with seq > `since`, at most the last 1000 of them; `latest_seq` is what to pass next.
    `ETag` and `If-None-Match` as /v1/jobs/{id}/logs."""
    def query(session: Any, job: Job) -> dict[str, Any]:
        found = timeline.shown_logs(session, read.settings, job, since, tail=LOG_TAIL)
        lines = [log_line(line) for line in found]
        return {"job_id": job.uuid, "latest_seq": lines[-1]["seq"] if lines else since, "lines": lines}
    return (await read.unless_unchanged(query)).response(json_answer)


@router.get("/jobs/{job_id}/events", responses=NOT_MODIFIED)
async def run_events(read: JobRead) -> Response:
    """The run's timeline, oldest first: every state transition (created, claimed, running, finalizing,
    completed, retrying, ...), checkpoints and requests. `ETag` and `If-None-Match` as /v1/jobs/{id}/events."""
    answer = await read.unless_unchanged(lambda session, job: [
        timeline_event(event) for event in timeline.shown_events(session, read.settings, job, limit=100_000)])
    return answer.response(json_answer)


@router.get("/jobs/{job_id}/result")
def run_result(job: OwnedJob, context: Context) -> dict[str, Any]:
    """The headline result; 404 until it exists (409 TRAINING_FAILED for a job that failed)."""
    return result_card(job.uuid, jobs.job_result(context.db, context.settings, job.org_id, job.id))


class RecommendBody(BaseModel):
    """A model and a dataset by id, or their sizes."""

    model_config = ConfigDict(extra="forbid")

    base_model_id: Ident | None = Field(None, description="A model from GET /base-models or GET /models.")
    dataset_id: Ident | None = Field(None, description="A dataset from GET /datasets.")
    params: int | None = Field(None, ge=1, le=10**13, description="The model's parameters, instead of its id.")
    dataset_tokens: int | None = Field(None, ge=1, le=10**13, description="The dataset's tokens, instead of its id.")
    dataset_bytes: int | None = Field(None, ge=1, le=10**15, description="The dataset's bytes, instead.")
    type: Literal["train", "finetune"] = Field("train", description=(
        "The run to recommend for: train trains full weights, finetune a LoRA adapter."))


RECOMMEND_BODY = {"content": {"application/json": {
    "schema": RecommendBody.model_json_schema(ref_template="#/components/schemas/{model}")}}}


@router.post("/training/recommend", responses=BAD_REQUEST, openapi_extra={"requestBody": RECOMMEND_BODY})
async def recommend(request: Request, context: Context, caller: Caller) -> dict[str, Any]:
    """A starting point and a safe window for each knob, with notes saying why. The body is read as
    JSON whatever its Content-Type."""
    body = await parse(request, RecommendBody)
    return await anyio.to_thread.run_sync(_recommend, body, context, caller)


def _recommend(body: RecommendBody, context: AppContext, caller: Principal) -> dict[str, Any]:
    resolve = _resolver(context.db, caller.org_id)
    request = RecommendRequest(
        base_model=resolve("base_model", body.base_model_id) if body.base_model_id else None,
        dataset=resolve("dataset", body.dataset_id) if body.dataset_id else None,
        params=body.params, dataset_tokens=body.dataset_tokens, dataset_bytes=body.dataset_bytes,
        method="full" if body.type == "train" else "lora")
    try:
        return recommendations.recommend_for(context.db, context.settings, caller.org_id, request)
    except InvalidRequest as exc:
        raise renamed(exc, {"base_model": "base_model_id", "dataset": "dataset_id"}) from None


@router.get("/base-models")
def list_base_models(context: Context, caller: Caller) -> dict[str, Any]:
    """Models a run may start from: the built-ins, then the ones registered. `id` is the UUID (Fusion's
    base_model_id); `name` the native id (Felix's base_model); both are taken wherever a model is named."""
    found = base_models.list_base_models(context.db, caller.org_id)
    return listing("base_models", [{
        "id": m.uuid, "name": m.id, "display_name": m.name, "description": m.description, "source_kind": m.source_kind,
        "architecture": m.architecture, "parameters": m.parameters, "context_length": m.context_length,
        "methods": m.methods, "created_at": iso_z(m.created_at)} for m in found])


@router.get("/models")
def list_models(context: Context, caller: Caller) -> dict[str, Any]:
    """Your trained models, newest first; each `id` is a base_model_id (or source_model_id) for a new run."""
    found = models.list_models(context.db, caller.org_id)
    job_ids = [m.job_id for m in found if m.job_id]
    with context.db.read() as session:
        job_uuids = uuids.uuids_of(session, "job", job_ids)
        names = {row.id: row.name for row in session.execute(select(Job.id, Job.name).where(Job.id.in_(job_ids)))}
    return listing("models", [{
        "id": m.uuid, "name": names.get(m.job_id or "") or m.id, "kind": m.kind, "base_model": m.base_model,
        "job_id": job_uuids.get(m.job_id or ""), "created_at": iso_z(m.created_at)} for m in found])


@router.get("/datasets")
def list_datasets(context: Context, caller: Caller) -> dict[str, Any]:
    """Your datasets, newest first; a `ready` one's `id` is a dataset_id."""
    return listing("datasets", [{
        "id": d.uuid, "name": d.name, "status": d.status, "format": d.format, "examples": d.examples,
        "tokens_est": d.tokens_est, "bytes": d.bytes, "created_at": iso_z(d.created_at)}
        for d in datasets.list_datasets(context.db, caller.org_id)])


def dialect() -> Dialect:
    return Dialect(name=DIALECT, prefixes=PREFIXES, router=router, render_error=render_envelope_400,
                   status_names=STATUS_NAMES)

