"""Document 003's words for its data endpoints (status, trajectories, datasets, auto-training) and
the translators from the services' objects to them. Every date is epoch milliseconds.

| 003 field                     | tuneyard                                                              |
|-------------------------------|-----------------------------------------------------------------------|
| runningJobs ... failedJobs    | the organization's jobs counted by `statuses.AGENT_TRAINING`'s words  |
| modelCount                    | trained models of the organization                                    |
| datasetCount                  | datasets built from trajectories (what GET /datasets lists)           |
| runtimeAvailable              | a worker heartbeat within a lease: a queued job would be claimed now  |
| trajectory id, source, status, startTime, endTime, llmCalls, providerAccesses | the same, as stored |
| llmCallCount                  | the stored trajectory's number of calls                               |
| dataset id                    | a normal dataset id (`ds_...`), usable as `datasetId` for a job       |
| threshold, cooldownHours, enabled | /v1/auto-training's config, the one stored per organization       |
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from tuneyard.api.dialects.statuses import AGENT_TRAINING
from tuneyard.store.stats import Stats
from tuneyard.store.status import JobStatus
from tuneyard.store.trajectory_tables import Trajectory


class TrainingStatus(BaseModel):
    """GET /api/training/status: exactly 003's counters, for the caller's organization."""

    runningJobs: int = Field(description="Jobs starting, running, finalizing or stopping.")
    queuedJobs: int = Field(description="Jobs waiting for a worker.")
    completedJobs: int
    failedJobs: int
    modelCount: int = Field(description="Trained models.")
    datasetCount: int = Field(description="Datasets built from trajectories (GET /api/training/datasets).")
    runtimeAvailable: bool = Field(description=(
        "A worker heartbeat within a lease: a queued job would be claimed and trained now. False: jobs "
        "are still accepted and wait in the queue."))


class TrajectoryItem(BaseModel):
    id: str
    source: str
    status: str = Field(description="completed | failed | running")
    llmCallCount: int
    startTime: int = Field(description="Epoch ms.")
    endTime: int | None = Field(description="Epoch ms; null while it runs.")


class TrajectoryList(BaseModel):
    available: bool = Field(True, description="Always true: trajectories are kept by the service itself.")
    total: int = Field(description="Stored trajectories of the organization, across all pages.")
    trajectories: list[TrajectoryItem] = Field(description="Newest ingested first.")


class TrajectoryFull(TrajectoryItem):
    task: str | None = Field(description="What the agent was doing (auto-training counts per task).")
    llmCalls: list[dict[str, Any]] = Field(description="{model, messages, response, purpose?, timestamp?, tokens?}")
    providerAccesses: list[dict[str, Any]] = Field(description="Kept as the agent sent them.")
    metadata: dict[str, Any]


class TrajectoryOne(BaseModel):
    trajectory: TrajectoryFull


class TrajectoriesStored(BaseModel):
    """POST /api/training/trajectories (tuneyard's extension: 003 documents no ingestion)."""

    created: list[str] = Field(description="Ids stored by this request.")
    existing: list[str] = Field(description="Ids already stored with the same content: retries, unchanged.")
    autoTraining: list[str] = Field(description="Auto-training runs this ingestion fired.")


class BuiltDataset(BaseModel):
    id: str = Field(description="A dataset id: `datasetId` of POST /api/training/jobs, GET /v1/datasets/{id}.")
    createdAt: int = Field(description="Epoch ms.")
    trajectoryCount: int
    exampleCount: int = Field(description="Chat examples: one per LLM call with a response, duplicates dropped.")


class DatasetList(BaseModel):
    datasets: list[BuiltDataset] = Field(description="Newest first.")


class DatasetOne(BaseModel):
    dataset: BuiltDataset


class AutoConfig(BaseModel):
    """003's three fields, and the two tuneyard adds (set them here or at /v1/auto-training)."""

    threshold: int
    cooldownHours: float
    enabled: bool
    jobTemplate: dict[str, Any] = Field(description="The job each firing submits (needed when enabled).")
    activateIfBetter: bool


class AutoConfigSaved(BaseModel):
    ok: bool = True
    config: AutoConfig


def status_counts(found: Stats, built_datasets: int) -> TrainingStatus:
    """The organization's figures in 003's counters (a cancelled job is in none of them)."""
    words: dict[str, int] = {}
    for native, count in found.jobs_by_status.items():
        word = AGENT_TRAINING[JobStatus(native)]
        words[word] = words.get(word, 0) + count
    return TrainingStatus(runningJobs=words.get("running", 0), queuedJobs=words.get("queued", 0),
                          completedJobs=words.get("completed", 0), failedJobs=words.get("failed", 0),
                          modelCount=found.models, datasetCount=built_datasets,
                          runtimeAvailable=found.workers_alive > 0)


def trajectory_item(row: Trajectory) -> TrajectoryItem:
    return TrajectoryItem(id=row.id, source=row.source, status=row.status, llmCallCount=row.llm_call_count,
                          startTime=row.start_time, endTime=row.end_time)


def trajectory_full(row: Trajectory) -> TrajectoryFull:
    return TrajectoryFull(**trajectory_item(row).model_dump(), task=row.task or None,
                          llmCalls=row.body["llmCalls"], providerAccesses=row.body["providerAccesses"],
                          metadata=row.body["metadata"])


def built_dataset(public: Mapping[str, Any]) -> BuiltDataset:
    """`trajectory_datasets.public`'s answer in 003's four fields."""
    return BuiltDataset(id=public["id"], createdAt=public["createdAt"], trajectoryCount=public["trajectoryCount"],
                        exampleCount=public["exampleCount"])
