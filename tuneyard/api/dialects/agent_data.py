"""Document 003 (an agent's training API) at /api/training:
status, trajectories, datasets built from them, auto-training config.

Its routes join 002's under the one dialect that owns the prefix (`training_api.dialect`), whose
renderer answers a bad request 400 INVALID_REQUEST. Translation only: trajectories, builds and the
auto-training config are services/trajectories.py, trajectory_datasets.py and auto_training.py, the
same the native /v1/trajectories, /v1/dataset-builds and /v1/auto-training serve, so an object made
here is that object there. The words and their mapping: `agent_data_words`.

Bodies are read as JSON whatever their Content-Type (`http.read_json`), as 002's curl lines need.
No route answers 503: the store is the training service here, and without a live worker a job is
still accepted and queued (`runtimeAvailable: false` says so) rather than refused.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response, status

from tuneyard.api.deps import AppContext, Caller, Context, checked_id
from tuneyard.api.dialects.agent_data_words import (
    AutoConfig,
    AutoConfigSaved,
    DatasetList,
    DatasetOne,
    TrainingStatus,
    TrajectoriesStored,
    TrajectoryList,
    TrajectoryOne,
    built_dataset,
    status_counts,
    trajectory_full,
    trajectory_item,
)
from tuneyard.api.dialects.http import BAD_REQUEST, json_body, read_json, validate
from tuneyard.services import auto_training, stats, trajectories, trajectory_datasets
from tuneyard.services.auto_training import AutoTrainingConfigIn
from tuneyard.services.trajectory_datasets import BuildFilters
from tuneyard.store.tenancy import Principal

router = APIRouter(tags=["training"])

_one = json_body(trajectories.TrajectoryIn)["content"]["application/json"]["schema"]
TRAJECTORY_BODY = {"required": True, "description": (
    "The body of POST /v1/trajectories: one trajectory, or `{\"trajectories\": [...]}` of 1 to "
    f"{trajectories.MAX_BATCH}; idempotent on `id`, checked whole, all or nothing."),
    "content": {"application/json": {"schema": {"anyOf": [_one, {
        "type": "object", "required": ["trajectories"], "additionalProperties": False,
        "properties": {"trajectories": {"type": "array", "items": _one, "minItems": 1,
                                        "maxItems": trajectories.MAX_BATCH}}}]}}}}
BUILD_BODY = {**json_body(BuildFilters), "required": False}
CONFIG_BODY = json_body(AutoTrainingConfigIn)
STORED_200: dict[int | str, dict[str, Any]] = {200: {
    "model": TrajectoriesStored, "description": "Every id was stored before with this content."}}
BUILT_200: dict[int | str, dict[str, Any]] = {200: {
    "model": DatasetOne, "description": "A dataset with exactly this content was built before: it."}}


def _trajectory_id(trajectory_id: str, _caller: Caller) -> str:  # the key is checked first
    return checked_id("trajectory", trajectory_id)


TrajectoryId = Annotated[str, Depends(_trajectory_id)]


@router.get("/status", response_model=TrainingStatus)
def training_status(context: Context, caller: Caller) -> TrainingStatus:
    """003's counters for your organization: jobs by 003's status words, models, built datasets, and
    whether a worker is alive to train (`runtimeAvailable`)."""
    found = stats.org_stats(context.db, context.settings, caller.org_id)
    built = len(trajectory_datasets.list_builds(context.db, caller.org_id))
    return status_counts(found, built)


@router.get("/trajectories", response_model=TrajectoryList, responses=BAD_REQUEST)
def list_trajectories(context: Context, caller: Caller,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                      offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0) -> TrajectoryList:
    """Your trajectories, newest ingested first, a page at a time."""
    page = trajectories.list_page(context.db, caller.org_id, limit=limit, offset=offset)
    return TrajectoryList(total=page.total, trajectories=[trajectory_item(t) for t in page.items])


@router.get("/trajectories/{trajectory_id}", response_model=TrajectoryOne)
def get_trajectory(trajectory_id: TrajectoryId, context: Context, caller: Caller) -> TrajectoryOne:
    """One trajectory with its LLM calls and provider accesses; another organization's is not found."""
    return TrajectoryOne(trajectory=trajectory_full(trajectories.get(context.db, caller.org_id, trajectory_id)))


@router.post("/trajectories", status_code=status.HTTP_201_CREATED, response_model=TrajectoriesStored,
             responses={**STORED_200, **BAD_REQUEST}, openapi_extra={"requestBody": TRAJECTORY_BODY})
async def ingest(request: Request, context: Context, caller: Caller, response: Response) -> TrajectoriesStored:
    """Store one trajectory or a batch, as POST /v1/trajectories does (an extension: 003 documents
    none). 201 when anything was stored, 200 when every id was a retry."""
    parsed = trajectories.parse_body(await read_json(request))
    return await anyio.to_thread.run_sync(_ingest, context, caller.org_id, parsed, response)


def _ingest(context: AppContext, org_id: str, parsed: list[trajectories.TrajectoryIn],
            response: Response) -> TrajectoriesStored:
    done = trajectories.ingest(context.db, org_id, parsed)
    fired = auto_training.after_ingest(context.db, context.settings, org_id, done.tasks)
    if not done.created:
        response.status_code = status.HTTP_200_OK
    return TrajectoriesStored(created=done.created, existing=done.existing, autoTraining=[r.id for r in fired])


@router.get("/datasets", response_model=DatasetList)
def list_datasets(context: Context, caller: Caller) -> DatasetList:
    """The datasets built from your trajectories, newest first."""
    builds = trajectory_datasets.list_builds(context.db, caller.org_id)
    return DatasetList(datasets=[built_dataset(trajectory_datasets.public(b)) for b in builds])


@router.post("/datasets/build", status_code=status.HTTP_201_CREATED, response_model=DatasetOne,
             responses={**BUILT_200, **BAD_REQUEST}, openapi_extra={"requestBody": BUILD_BODY})
async def build_dataset(request: Request, context: Context, caller: Caller, response: Response) -> DatasetOne:
    """Build a dataset from your trajectories: 003's `limit` and `minLlmCallsPerTrajectory`, and
    tuneyard's other filters (`status`, `task`, `since`, `until`, `source`, `model`, `name`). Nothing
    matching is a 400."""
    filters = validate(BuildFilters, await read_json(request, empty={}))
    return await anyio.to_thread.run_sync(_build, context, caller.org_id, filters, response)


def _build(context: AppContext, org_id: str, filters: BuildFilters, response: Response) -> DatasetOne:
    built = trajectory_datasets.build_dataset(context.db, context.settings, org_id, filters)
    if not built.created:
        response.status_code = status.HTTP_200_OK
    return DatasetOne(dataset=built_dataset(trajectory_datasets.public(built)))


@router.get("/auto/config", response_model=AutoConfig)
def get_auto_config(context: Context, caller: Caller) -> AutoConfig:
    """The auto-training config (the one /v1/auto-training serves; defaults: disabled, threshold 100,
    cooldown 24 h)."""
    return _config(auto_training.get_config(context.db, caller.org_id))


@router.put("/auto/config", response_model=AutoConfigSaved, responses=BAD_REQUEST,
            openapi_extra={"requestBody": CONFIG_BODY})
async def put_auto_config(request: Request, context: Context, caller: Caller) -> AutoConfigSaved:
    """Change the fields given, keep the others; checked whole (enabled needs a `jobTemplate`). No
    body is a 400: a PUT says what to change."""
    changes = await read_json(request)
    return await anyio.to_thread.run_sync(_update, context, caller, changes)


def _update(context: AppContext, caller: Principal, changes: Any) -> AutoConfigSaved:
    return AutoConfigSaved(config=_config(auto_training.update_config(context.db, context.settings, caller, changes)))


def _config(config: AutoTrainingConfigIn) -> AutoConfig:
    return AutoConfig.model_validate(config.model_dump(by_alias=True))
