"""Trajectories, datasets built from them and auto-training, as the API shows them: in document
003's camelCase words, which its agents already send (services/trajectories.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tuneyard.services.trajectory_datasets import BuildFilters


class Ingested(BaseModel):
    created: list[str] = Field(description="Ids stored by this request.")
    existing: list[str] = Field(description="Ids already stored with the same content: retries, unchanged.")
    autoTraining: list[str] = Field(description="Auto-training runs this ingestion fired (GET /v1/auto-training/runs).")


class TrajectorySummary(BaseModel):
    id: str
    source: str
    status: str
    task: str | None
    llmCallCount: int
    startTime: int
    endTime: int | None
    models: list[str]
    createdAt: str


class TrajectoryDetail(TrajectorySummary):
    llmCalls: list[dict[str, Any]]
    providerAccesses: list[dict[str, Any]]
    metadata: dict[str, Any]


class TrajectoryPage(BaseModel):
    available: bool = True
    total: int = Field(description="How many match the filters, across all pages.")
    limit: int
    offset: int
    trajectories: list[TrajectorySummary]


class BuildRequest(BuildFilters):
    dry_run: bool = Field(False, alias="dryRun", description="Count what would be built; build nothing.")


class BuiltDataset(BaseModel):
    id: str = Field(description="The dataset's id: a normal dataset (GET /v1/datasets/{dataset_id}).")
    name: str
    status: str
    createdAt: int
    trajectoryCount: int
    exampleCount: int
    contentSha256: str
    filters: dict[str, Any]
    trajectoryIds: list[str] = Field(description="Lineage: exactly the trajectories that matched.")


class BuildPreview(BaseModel):
    trajectoryCount: int
    exampleCount: int


class BuildList(BaseModel):
    datasets: list[BuiltDataset]


class AutoTrainingRun(BaseModel):
    id: str
    task: str | None
    window: int = Field(description="The task's firing number: with the task, the run's idempotency key.")
    status: str = Field(description="fired | submitted | failed")
    reason: dict[str, Any] = Field(description="Why it fired: the count, the threshold, the cooldown.")
    datasetId: str | None
    jobId: str | None
    error: dict[str, Any] | None
    createdAt: str
    finishedAt: str | None


class AutoTrainingRuns(BaseModel):
    runs: list[AutoTrainingRun]
