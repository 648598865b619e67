"""Document 003 (an agent's training API) at /api/training: jobs in 003's words, cancel, models,
import-ollama, activate, benchmark. Its words are in `agent_words`.

Its routes join 002's under the one dialect that owns the prefix (`training_api.dialect`); a job
body is recognised there (`agent_words.which_document`) and a 003 body submitted here (`submit`).
Everything is a translation to the services: submission, the trajectory dataset builds, lifecycle
cancel, serving's activation, the Ollama import and evaluations.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy import select

from tuneyard.api.deps import AppContext, Caller, Context, OwnedJob
from tuneyard.api.dialects.agent_words import (
    DEFAULT_MODEL,
    NAMES,
    AgentTrainingJob,
    backend_problem,
    body_object,
    job_object,
    model_name,
    model_object,
)
from tuneyard.api.dialects.http import BAD_REQUEST, epoch_ms, listing, read_json
from tuneyard.api.dialects.training_words import DIALECT
from tuneyard.api.dialects.translate import renamed
from tuneyard.errors import SpecError
from tuneyard.export.ollama import DEFAULT_OLLAMA_URL
from tuneyard.services import devices, evaluations, jobs, lookup, models, ollama_import, serving, trajectory_datasets
from tuneyard.services.errors import InvalidRequest, TrainingFailed
from tuneyard.services.evaluations import Evaluation, EvaluationOptions
from tuneyard.services.job_view import JobView
from tuneyard.services.submission import JobRequest, plan_job
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import Job
from tuneyard.store.tenancy import Principal

router = APIRouter(tags=["training"])

BENCHMARK_WAIT_S = 30.0
"""How long POST /models/:id/benchmark waits for its evaluation before answering 202 (then poll
GET /models/:id/benchmark). 003 prints a synchronous answer; an evaluation takes minutes."""


def submit(body: AgentTrainingJob, context: AppContext, caller: Principal) -> JobView:
    """A job from a 003 body: checked whole without its data first, then its dataset chosen (or built
    from at most `maxTrajectories` trajectories), then queued."""
    db, settings = context.db, context.settings
    problems: list[dict[str, Any]] = []
    found = backend_problem(body.backend, devices.trainable_devices(db, settings))
    if found is not None:
        problems.append(found)
    dataset_id = _chosen_dataset(context, caller.org_id, body, problems)
    model = lookup.model_reference(db, caller.org_id, body.model or DEFAULT_MODEL)
    labels = {"config": body.shown_config(), "document": "003", "backend": body.backend or "native"}
    device = body.required_device()  # `backend: cpu|cuda`: a worker of that device claims it, and trains on it
    check = JobRequest(spec=body.spec(model, dataset_id), problems=tuple(problems), dialect=DIALECT, labels=labels,
                       device=device)
    try:
        plan_job(db, settings, caller.org_id, check)
    except InvalidRequest as exc:
        left = [p for p in exc.problems if dataset_id is not None or not str(p["field"]).startswith("datasets")]
        if left:
            raise renamed(InvalidRequest(left), NAMES) from None
    if dataset_id is None:  # maxTrajectories without a datasetId: the latest N trajectories, built now
        dataset_id = _built(context, caller.org_id, body.max_trajectories)
    request = JobRequest(spec=body.spec(model, dataset_id), dialect=DIALECT, labels=labels, device=device)
    try:
        return jobs.submit_job(db, settings, caller, request).job
    except InvalidRequest as exc:
        raise renamed(exc, NAMES) from None


def _chosen_dataset(context: AppContext, org_id: str, body: AgentTrainingJob,
                    problems: list[dict[str, Any]]) -> str | None:
    """The dataset id the job trains on, or None when one is to be built (maxTrajectories alone).
    Adds a problem where there is none to take."""
    limit = body.max_trajectories
    if body.dataset_id is None:
        if limit is not None:
            return None
        builds = trajectory_datasets.list_builds(context.db, org_id)
        if not builds:
            problems.append({"field": "datasetId", "message": (
                "no dataset has been built from trajectories yet: POST /api/training/datasets/build, or name one")})
            return None
        return builds[0][0].id
    try:
        dataset_id = lookup.native_id(context.db, org_id, "dataset", body.dataset_id)
    except NotFound:
        problems.append({"field": "datasetId", "message": f"no dataset {body.dataset_id!r}"})
        return None
    if limit is not None:
        try:
            _dataset, build = trajectory_datasets.lineage(context.db, org_id, dataset_id)
        except NotFound:
            problems.append({"field": "maxTrajectories", "message": (
                f"dataset {body.dataset_id} was not built from trajectories, so it has no trajectories to cap")})
        else:
            if build.trajectory_count > limit:
                problems.append({"field": "maxTrajectories", "message": (
                    f"dataset {body.dataset_id} was built from {build.trajectory_count} trajectories, more than "
                    f"{limit}: leave out datasetId to train on a dataset built from the latest {limit}")})
    return dataset_id


def _built(context: AppContext, org_id: str, limit: int | None) -> str:
    filters = trajectory_datasets.BuildFilters.model_validate({"limit": limit})
    try:
        return trajectory_datasets.build_dataset(context.db, context.settings, org_id, filters).dataset.id
    except InvalidRequest as exc:
        raise InvalidRequest([{"field": "maxTrajectories", "message": p["message"]} for p in exc.problems]) from None


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job: OwnedJob, context: Context) -> dict[str, Any]:
    """Cancel a queued or running job: `{"job": {"id", "status": "cancelled", ...}}`. A job that has
    ended is 409 CONFLICT (as 002's DELETE of it)."""
    # A running job is `cancelling` until its runner stops: 003 calls that cancelled (statuses.AGENT_TRAINING).
    return {"job": job_object(jobs.cancel_job(context.db, context.settings, job.org_id, job.id))}


def _owned_model(model_id: str, context: Context, caller: Caller) -> str:
    """The organization's trained model by id or UUID; another organization's is 404."""
    native = lookup.native_id(context.db, caller.org_id, "model", model_id)
    models.get_model(context.db, caller.org_id, native)
    return native


OwnedModel = Annotated[str, Depends(_owned_model)]


@router.get("/models")
def list_models(context: Context, caller: Caller) -> dict[str, Any]:
    """Your trained models, newest first: `active` when serving has them activated."""
    found = models.list_models(context.db, caller.org_id)
    active = {a.model_id for a in serving.list_activations(context.db, caller.org_id)}
    job_ids = [m.job_id for m in found if m.job_id]
    with context.db.read() as session:
        names = {row.id: row.name for row in session.execute(select(Job.id, Job.name).where(Job.id.in_(job_ids)))} \
            if job_ids else {}
    return listing("models", [model_object(m, model_name(m, names.get(m.job_id or "")), m.id in active)
                              for m in found])


IMPORT_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "properties": {
        "modelName": {"type": "string", "description": "The name in Ollama; the model id by default."},
        "baseModel": {"type": "string", "description": "Accepted and shown back; the pushed GGUF needs no base."},
        "ollamaUrl": {"type": "string", "description": f"A loopback URL only; {DEFAULT_OLLAMA_URL} by default."},
    }}}}}
IMPORT_NAMES = {"ollama_url": "ollamaUrl", "model_name": "modelName"}


@router.post("/models/{model_id}/import-ollama", responses=BAD_REQUEST, openapi_extra={"requestBody": IMPORT_BODY})
async def import_ollama(model_id: OwnedModel, request: Request, context: Context, caller: Caller) -> dict[str, Any]:
    """Push the model's verified GGUF export into an Ollama on this machine and create it there.
    `ollamaUrl` must be loopback (localhost, 127.0.0.1, ::1), checked before any connection; a model
    without a completed GGUF export is 409 (POST /v1/models/{id}/exports {"format": "gguf"} first)."""
    body = body_object(await read_json(request))
    problems = [{"field": k, "message": "unknown field"} for k in body if k not in ("modelName", "baseModel",
                                                                                      "ollamaUrl")]
    problems += [{"field": k, "message": "expected a string"} for k in ("modelName", "baseModel", "ollamaUrl")
                 if k in body and not isinstance(body[k], str)]
    if problems:
        raise InvalidRequest(problems)
    url = body.get("ollamaUrl", DEFAULT_OLLAMA_URL)

    def run() -> dict[str, Any]:
        try:
            done = ollama_import.import_model(context.db, caller.org_id, model_id, ollama_url=url,
                                              model_name=body.get("modelName"), export_id=None)
        except SpecError as exc:
            raise renamed(InvalidRequest(exc.problems), IMPORT_NAMES) from None
        return {"model": {"id": done.model_id, "ollamaName": done.ollama_name, "importedAt": epoch_ms(done.imported_at),
                          "baseModel": body.get("baseModel"), "exportId": done.export_id, "digest": done.digest}}
    return await anyio.to_thread.run_sync(run)


ACTIVATE_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "additionalProperties": False, "properties": {
        "providerModel": {"type": "string", "description": "A name chat completions may call it by."}}}}}}


@router.post("/models/{model_id}/activate", responses=BAD_REQUEST, openapi_extra={"requestBody": ACTIVATE_BODY})
async def activate(model_id: OwnedModel, request: Request, context: Context, caller: Caller) -> dict[str, Any]:
    """Load the model into serving: it answers /v1/chat/completions by its id or `providerModel`.
    `{"ok": true, "activeModel": <providerModel, else the model id>}`."""
    body = body_object(await read_json(request))
    problems = [{"field": k, "message": "unknown field"} for k in body if k != "providerModel"]
    provider = body.get("providerModel")
    if provider is not None and not isinstance(provider, str):
        problems.append({"field": "providerModel", "message": "expected a string"})
    if problems:
        raise InvalidRequest(problems)
    supervisor = request.app.state.serving

    def run() -> dict[str, Any]:
        try:
            row = serving.activate(context.db, context.settings, supervisor, caller.org_id, model_id, backend=None,
                                   provider_model=provider)
        except InvalidRequest as exc:
            raise renamed(exc, {"provider_model": "providerModel"}) from None
        return {"ok": True, "activeModel": row.provider_model or model_id, "modelId": model_id,
                "backend": row.backend}
    return await anyio.to_thread.run_sync(run)


BENCHMARK_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"description": "The evaluation is still running: `{modelId, status, evaluationId}`; poll "
                         "GET /api/training/models/{model_id}/benchmark."}}


@router.post("/models/{model_id}/benchmark", responses={**BAD_REQUEST, **BENCHMARK_ANSWERS})
def benchmark(model_id: OwnedModel, context: Context, caller: Caller, response: Response,
              wait: Annotated[float, Query(ge=0, le=300)] = BENCHMARK_WAIT_S) -> dict[str, Any]:
    """Evaluate the model beside its base on what its training held out; wait up to `wait` seconds
    for the scores, else 202 with where to poll. One already running is waited on, not started again."""
    running = [e for e in evaluations.list_evaluations(context.db, context.settings, caller.org_id, model_id)
               if not e.job.status.is_terminal()]
    evaluation = running[0] if running else _start_evaluation(context, caller, model_id)
    deadline = time.monotonic() + wait
    while not evaluation.job.status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.5)
        evaluation = evaluations.get_evaluation(context.db, context.settings, caller.org_id, evaluation.job.id)
    return _benchmark_answer(evaluation, response)


@router.get("/models/{model_id}/benchmark", responses=BENCHMARK_ANSWERS)
def latest_benchmark(model_id: OwnedModel, context: Context, caller: Caller, response: Response) -> dict[str, Any]:
    """The model's newest benchmark: 200 with its scores, 202 while it runs, 404 when there is none."""
    found = evaluations.list_evaluations(context.db, context.settings, caller.org_id, model_id)
    if not found:
        raise NotFound("benchmark of model", model_id)
    return _benchmark_answer(found[0], response)


def _start_evaluation(context: AppContext, caller: Principal, model_id: str) -> Evaluation:
    model = models.get_model(context.db, caller.org_id, model_id)
    spec = evaluations.evaluation_body(context.db, caller.org_id, model, EvaluationOptions())
    submitted = jobs.submit_job(context.db, context.settings, caller, JobRequest(spec=spec, dialect=DIALECT))
    return evaluations.get_evaluation(context.db, context.settings, caller.org_id, submitted.job.id)


def _benchmark_answer(evaluation: Evaluation, response: Response) -> dict[str, Any]:
    """003's `{modelId, scores, completedAt}` with what the scores are (`method`) and the rest the
    evaluation measured; 202 while it runs; a failed one is 409 TRAINING_FAILED with its error."""
    job, result = evaluation.job, evaluation.result or {}
    if job.status.value == "completed":
        scores = {k: v for k, v in (result.get("scores") or {}).items() if k != "method"}
        base = (result.get("base") or {}).get("scores") or {}
        return {"modelId": evaluation.model_id, "scores": scores, "completedAt": epoch_ms(job.finished_at),
                "method": result.get("method"), "evaluationId": job.id, "examples": result.get("examples"),
                "baseModel": evaluation.compare_with, "baseScores": {k: v for k, v in base.items() if k != "method"},
                "figures": {k: v for k, v in (result.get("trained") or {}).items() if k != "scores"}}
    if job.status.is_terminal():
        message = (job.error or {}).get("message", job.status.value)
        raise TrainingFailed(f"the benchmark (evaluation {job.id}) ended {job.status.value}: {message}",
                             job_id=job.id, error=job.error)
    response.status_code = status.HTTP_202_ACCEPTED
    return {"modelId": evaluation.model_id, "status": job.status.value, "evaluationId": job.id, "scores": None,
            "completedAt": None}
