"""/v1/trajectories (agent runs), /v1/dataset-builds (datasets built from them) and
/v1/auto-training (build and train once a task has enough new trajectories).

Dataset builds are their own collection rather than POST /v1/datasets/build: that path would
shadow GET and DELETE /v1/datasets/{dataset_id} for an id `build` and answer 404 where the
document promises 405.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Depends, Query, Request, Response, status

from tuneyard.api.deps import Caller, Context, checked_id
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES
from tuneyard.api.schemas.trajectories import (
    AutoTrainingRun,
    AutoTrainingRuns,
    BuildList,
    BuildPreview,
    BuildRequest,
    BuiltDataset,
    Ingested,
    TrajectoryDetail,
    TrajectoryPage,
    TrajectorySummary,
)
from tuneyard.services import auto_training, trajectories, trajectory_datasets
from tuneyard.services.auto_training import AutoTrainingConfigIn
from tuneyard.services.errors import InvalidRequest
from tuneyard.spec.text import Name

router = APIRouter(responses=ERROR_RESPONSES)

TrajectoryBody = Annotated[dict[str, Any], Body(
    description=("One trajectory (document 003's object: id?, source, status, task?, startTime, endTime?, "
                 f"llmCalls, providerAccesses?, metadata?) or `{{\"trajectories\": [...]}}`, 1 to "
                 f"{trajectories.MAX_BATCH}. Checked whole; all or nothing."),
    examples=[{"id": "550e8400-e29b-41d4-a716-446655440000", "source": "chat", "status": "completed",
               "task": "support", "startTime": 1718000000000, "endTime": 1718000010000,
               "llmCalls": [{"model": "eliza-1-2b", "messages": [{"role": "user", "content": "Hi"}],
                             "response": "Hello! How can I help?"}]}],
)]
IMPORT_TEXT = {"schema": {"type": "string", "minLength": 1}}
IMPORT_BODY = {"requestBody": {"required": True, "content": {"text/plain": IMPORT_TEXT},
                               "description": "OpenAI-style chat logs, one JSON object a line (JSONL, UTF-8); "
                                              "read whatever the Content-Type says (application/x-ndjson too)"}}


def _trajectory_id(trajectory_id: str, _caller: Caller) -> str:  # the key is checked first
    return checked_id("trajectory", trajectory_id)


def _build_id(build_id: str, _caller: Caller) -> str:
    return checked_id("dataset", build_id)


TrajectoryId = Annotated[str, Depends(_trajectory_id)]
BuiltId = Annotated[str, Depends(_build_id)]


def _ingested(context: Context, org_id: str, parsed: list[trajectories.TrajectoryIn], response: Response) -> Ingested:
    done = trajectories.ingest(context.db, org_id, parsed)
    fired = auto_training.after_ingest(context.db, context.settings, org_id, done.tasks)
    if not done.created:
        response.status_code = status.HTTP_200_OK
    return Ingested(created=done.created, existing=done.existing, autoTraining=[r.id for r in fired])


@router.post("/v1/trajectories", status_code=status.HTTP_201_CREATED, response_model=Ingested,
             tags=["trajectories"], responses={200: {"model": Ingested, "description": "Every id was stored "
                                                     "before with this content."}, **BODY_RESPONSES})
def ingest(body: TrajectoryBody, context: Context, caller: Caller, response: Response) -> Ingested:
    """Store one trajectory or a batch (idempotent on `id`); may fire auto-training."""
    return _ingested(context, caller.org_id, trajectories.parse_body(body), response)


@router.post("/v1/trajectory-imports", status_code=status.HTTP_201_CREATED, response_model=Ingested,
             tags=["trajectories"], openapi_extra=IMPORT_BODY,
             responses={200: {"model": Ingested, "description": "Every line was imported before."}, **BODY_RESPONSES})
async def import_lines(request: Request, context: Context, caller: Caller, response: Response,
                       source: Annotated[Name, Query()] = "import",
                       task: Annotated[str | None, Query(min_length=1, max_length=128,
                                                         pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")] = None,
                       ) -> Ingested:
    """Import OpenAI-style chat logs (JSONL): every bad line reported by number, nothing stored then."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest([{"field": "(body)", "message": f"not UTF-8 at byte {exc.start}"}]) from exc
    parsed = trajectories.parse_import(text, source=source, task=task)
    return await anyio.to_thread.run_sync(_ingested, context, caller.org_id, parsed, response)


@router.get("/v1/trajectories", response_model=TrajectoryPage, tags=["trajectories"])
def list_trajectories(
    context: Context, caller: Caller,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    task: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    status_: Annotated[str | None, Query(alias="status",
                                         json_schema_extra={"enum": list(trajectories.STATUSES)})] = None,
    source: Annotated[Name | None, Query()] = None,
) -> TrajectoryPage:
    """Newest ingested first, with the total the filters match."""
    if status_ is not None and status_ not in trajectories.STATUSES:
        raise InvalidRequest([{"field": "status", "message": f"expected one of {', '.join(trajectories.STATUSES)}"}])
    page = trajectories.list_page(context.db, caller.org_id, limit=limit, offset=offset, task=task,
                                  status=status_, source=source)
    return TrajectoryPage(total=page.total, limit=limit, offset=offset,
                          trajectories=[TrajectorySummary(**trajectories.summary(t)) for t in page.items])


@router.get("/v1/trajectories/{trajectory_id}", response_model=TrajectoryDetail, tags=["trajectories"])
def get_trajectory(trajectory_id: TrajectoryId, context: Context, caller: Caller) -> TrajectoryDetail:
    return TrajectoryDetail(**trajectories.detail(trajectories.get(context.db, caller.org_id, trajectory_id)))


@router.delete("/v1/trajectories/{trajectory_id}", status_code=status.HTTP_204_NO_CONTENT,
               response_class=Response, tags=["trajectories"])
def delete_trajectory(trajectory_id: TrajectoryId, context: Context, caller: Caller) -> Response:
    trajectories.delete(context.db, caller.org_id, trajectory_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/dataset-builds", status_code=status.HTTP_201_CREATED, response_model=BuiltDataset | BuildPreview,
             tags=["datasets"], responses={200: {"model": BuiltDataset | BuildPreview, "description": (
                 "A dry run's counts, or the dataset built before with exactly this content.")}, **BODY_RESPONSES})
def build_dataset(body: BuildRequest, context: Context, caller: Caller,
                  response: Response) -> BuiltDataset | BuildPreview:
    """Build a dataset from trajectories (deterministic: same filters, same trajectories → same content)."""
    if body.dry_run:
        response.status_code = status.HTTP_200_OK
        matched, examples = trajectory_datasets.select_examples(context.db, caller.org_id, body)
        return BuildPreview(trajectoryCount=len(matched), exampleCount=len(examples))
    built = trajectory_datasets.build_dataset(context.db, context.settings, caller.org_id, body)
    if not built.created:
        response.status_code = status.HTTP_200_OK
    return BuiltDataset(**trajectory_datasets.public(built))


@router.get("/v1/dataset-builds", response_model=BuildList, tags=["datasets"])
def list_builds(context: Context, caller: Caller) -> BuildList:
    return BuildList(datasets=[BuiltDataset(**trajectory_datasets.public(b))
                               for b in trajectory_datasets.list_builds(context.db, caller.org_id)])


@router.get("/v1/dataset-builds/{build_id}", response_model=BuiltDataset, tags=["datasets"])
def get_build(build_id: BuiltId, context: Context, caller: Caller) -> BuiltDataset:
    """A built dataset's filters, counts and lineage."""
    return BuiltDataset(**trajectory_datasets.public(trajectory_datasets.lineage(context.db, caller.org_id,
                                                                                 build_id)))


@router.get("/v1/auto-training", response_model=AutoTrainingConfigIn, tags=["auto-training"],
            response_model_by_alias=True)
def get_auto_training(context: Context, caller: Caller) -> AutoTrainingConfigIn:
    """The organization's auto-training (defaults: disabled, threshold 100, cooldown 24 h)."""
    return auto_training.get_config(context.db, caller.org_id)


@router.put("/v1/auto-training", response_model=AutoTrainingConfigIn, tags=["auto-training"],
            responses=BODY_RESPONSES)
def put_auto_training(body: Annotated[dict[str, Any], Body(examples=[{
        "enabled": True, "threshold": 100, "cooldownHours": 24,
        "jobTemplate": {"base_model": "tiny-llama", "method": "lora", "hyperparams": {"max_steps": 50}}}])],
        context: Context, caller: Caller) -> AutoTrainingConfigIn:
    """Set it whole; the job template is checked as a job would be (its datasets come from each firing)."""
    return auto_training.put_config(context.db, context.settings, caller, body)


@router.get("/v1/auto-training/runs", response_model=AutoTrainingRuns, tags=["auto-training"])
def auto_training_runs(context: Context, caller: Caller,
                       limit: Annotated[int, Query(ge=1, le=200)] = 50) -> AutoTrainingRuns:
    """When it fired, why, and which dataset and job it made (newest first)."""
    runs = auto_training.history(context.db, caller.org_id, limit)
    return AutoTrainingRuns(runs=[AutoTrainingRun(**r) for r in runs])
