"""Datasets built from trajectories: each LLM call becomes one chat example (its messages, then its
response as the assistant turn), duplicates dropped.

The build is deterministic: trajectories in start-time order (then id), calls in their order, so
the same filters over the same trajectories write the same bytes, whose sha256 is the dataset's
content hash. Building that content again returns the dataset already built. The result is a
normal dataset (a file, validated, with stats and preview) with its lineage in `dataset_builds`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Field

from tuneyard.services import datasets
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.files import files_dir
from tuneyard.services.trajectories import _Strict
from tuneyard.settings import Settings
from tuneyard.spec.text import DatasetName, Name
from tuneyard.store import datasets as dataset_store
from tuneyard.store import trajectories as store
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.ids import new_id, utcnow
from tuneyard.store.quotas import Quotas
from tuneyard.store.tables import Dataset
from tuneyard.store.trajectory_tables import DatasetBuild, Trajectory

EpochMs = Annotated[int, Field(ge=0, le=2**53)]


Status = Literal["completed", "failed", "running"]


def _completed_only() -> list[Status]:
    return ["completed"]


class BuildFilters(_Strict):
    """Which trajectories a dataset is built from (document 003's words); all are optional."""

    name: DatasetName | None = Field(None, description="The dataset's name; `trajectories-<hash>` by default.")
    limit: Annotated[int, Field(ge=1, le=100_000)] | None = Field(
        None, description="At most this many trajectories: the latest by start time.")
    min_llm_calls: Annotated[int, Field(ge=1, le=10_000)] = Field(1, alias="minLlmCallsPerTrajectory")
    status: list[Status] = Field(
        default_factory=_completed_only, min_length=1, max_length=3,
        description="Trajectory statuses to take; completed ones only by default.")
    task: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    since: EpochMs | None = Field(None, description="Started at or after (epoch ms).")
    until: EpochMs | None = Field(None, description="Started before (epoch ms).")
    source: Name | None = None
    model: Name | None = Field(None, description="Only calls to this model become examples.")

    def selection(self) -> store.Selection:
        return store.Selection(statuses=tuple(sorted(set(self.status))), task=self.task, source=self.source,
                               since=self.since, until=self.until, min_llm_calls=self.min_llm_calls)

    def recorded(self) -> dict[str, Any]:
        # A subclass's own fields (the API's dryRun) say how to answer, not what was built.
        return self.model_dump(by_alias=True, exclude_none=True, include=set(BuildFilters.model_fields) - {"name"})


@dataclass(frozen=True)
class Built:
    dataset: Dataset
    build: DatasetBuild
    created: bool  # False: a dataset with exactly this content was built before; this is it


def build_dataset(db: Database, settings: Settings, org_id: str, filters: BuildFilters, *,
                  selection: store.Selection | None = None) -> Built:
    """Select, turn into examples, write, validate, record lineage. 422 when nothing matches.

    `selection` replaces the filters' own (auto-training's: one task, up to its firing's mark)."""
    matched, examples = select_examples(db, org_id, filters, selection)
    if not examples:
        raise InvalidRequest([{"field": "(filters)", "message": "no trajectory matches these filters with an "
                                                                 "LLM call that has a response"}])
    content = "".join(json.dumps(e, sort_keys=True, ensure_ascii=False) + "\n" for e in examples).encode()
    digest = hashlib.sha256(content).hexdigest()
    earlier = _earlier(db, org_id, digest, filters.name)
    if earlier is not None:
        return earlier
    try:
        return _write(db, settings, org_id, filters, matched, content, digest, len(examples))
    except Conflict:
        again = _earlier(db, org_id, digest, filters.name)  # a concurrent identical build won the name
        if again is None:
            raise
        return again


def select_examples(db: Database, org_id: str, filters: BuildFilters, selection: store.Selection | None = None,
                    ) -> tuple[list[Trajectory], list[dict[str, Any]]]:
    """The trajectories the filters match and the examples they make (what a dry run counts)."""
    if filters.since is not None and filters.until is not None and filters.until <= filters.since:
        raise InvalidRequest([{"field": "until", "message": "until must be after since"}])
    with db.read() as session:
        matched = store.select_for_build(session, org_id, selection or filters.selection())
    if filters.model is not None:
        matched = [t for t in matched if filters.model in t.models]
    if filters.limit is not None:
        matched = matched[-filters.limit:]
    return matched, _examples(matched, filters.model)


def _examples(matched: list[Trajectory], model: str | None) -> list[dict[str, Any]]:
    seen: set[str] = set()
    examples = []
    for trajectory in matched:
        for call in trajectory.body["llmCalls"]:
            if (model is not None and call["model"] != model) or not call["response"].strip():
                continue
            messages = [{"role": m["role"], "content": m["content"]} for m in call["messages"]]
            example = {"messages": [*messages, {"role": "assistant", "content": call["response"]}]}
            key = json.dumps(example, sort_keys=True)
            if key not in seen:
                seen.add(key)
                examples.append(example)
    return examples


def _earlier(db: Database, org_id: str, digest: str, name: str | None) -> Built | None:
    build = store.build_by_content(db, org_id, digest)
    if build is None:
        return None
    dataset = dataset_store.get_dataset(db, org_id, build.dataset_id)
    if name is not None and dataset.name != name:
        return None  # the same content asked for under another name: a dataset of its own
    return Built(dataset, build, created=False)


def _write(db: Database, settings: Settings, org_id: str, filters: BuildFilters, matched: list[Trajectory],
           content: bytes, digest: str, example_count: int) -> Built:
    file_id = new_id("file")
    target = files_dir(settings) / f"{file_id}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    quotas = Quotas.of(settings)
    name = filters.name or f"trajectories-{digest[:16]}"
    try:
        new = dataset_store.NewFile(org_id, f"{name}.jsonl", len(content), digest, str(target))
        dataset_store.create_file(db, new, file_id=file_id, quotas=quotas)
        dataset = datasets.create_dataset(db, org_id, datasets.DatasetCreate(name, [file_id], "chat"),
                                          inline_bytes=max(len(content), datasets.INLINE_VALIDATION_BYTES),
                                          quotas=quotas)
    except BaseException:
        _discard(db, org_id, file_id)
        target.unlink(missing_ok=True)
        raise
    build = DatasetBuild(dataset_id=dataset.id, org_id=org_id, filters=filters.recorded(),
                         trajectory_ids=[t.id for t in matched], trajectory_count=len(matched),
                         example_count=example_count, content_sha256=digest, created_at=utcnow())
    with db.write() as session:
        store.record_build(session, build)
    return Built(dataset, build, created=True)


def _discard(db: Database, org_id: str, file_id: str) -> None:
    with contextlib.suppress(NotFound):
        dataset_store.delete_file(db, org_id, file_id)


def lineage(db: Database, org_id: str, dataset_id: str) -> tuple[Dataset, DatasetBuild]:
    """A dataset and how it was built from trajectories; NotFound when it was not built from them."""
    dataset = dataset_store.get_dataset(db, org_id, dataset_id)
    build = store.get_build(db, org_id, dataset_id)
    if build is None:
        raise NotFound("dataset build", dataset_id)
    return dataset, build


def list_builds(db: Database, org_id: str) -> list[tuple[Dataset, DatasetBuild]]:
    """The organization's datasets built from trajectories, newest first."""
    builds = store.list_builds(db, org_id)
    found = {d.id: d for d in dataset_store.list_datasets(db, org_id)}
    return [(found[b.dataset_id], b) for b in builds if b.dataset_id in found]


def public(built: Built | tuple[Dataset, DatasetBuild]) -> dict[str, Any]:
    """A built dataset as document 003 shows one, with the native dataset's fields beside it."""
    dataset, build = (built.dataset, built.build) if isinstance(built, Built) else built
    return {"id": dataset.id, "name": dataset.name, "status": dataset.status,
            "createdAt": int(dataset.created_at.timestamp() * 1000),
            "trajectoryCount": build.trajectory_count, "exampleCount": build.example_count,
            "contentSha256": build.content_sha256, "filters": build.filters, "trajectoryIds": build.trajectory_ids}
