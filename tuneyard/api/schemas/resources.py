"""Files, datasets, base models, trained models and stats, as the API takes and shows them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tuneyard.api.schemas.common import Request
from tuneyard.services.base_models import BaseModelInfo
from tuneyard.spec.job import DataFormatName
from tuneyard.spec.text import DatasetName, Description, Ident, Name, Reference
from tuneyard.store.activation_tables import ModelActivation
from tuneyard.store.stats import Stats
from tuneyard.store.tables import Dataset, File, TrainedModel


class FilePublic(BaseModel):
    """OpenAI's file object (what its SDK's `files.create` reads), with tuneyard's `sha256` and `uuid`."""

    id: str
    uuid: str
    object: Literal["file"] = "file"
    filename: str
    bytes: int
    sha256: str
    purpose: str
    created_at: int = Field(description="Unix seconds, as OpenAI's file object has it.")
    status: Literal["processed"] = Field(
        "processed", description="OpenAI's (deprecated) file status: stored whole, so always processed; "
        "contents are checked when a dataset or job uses the file.")
    status_details: None = None
    expires_at: None = Field(None, description="Files do not expire.")

    @classmethod
    def of(cls, f: File) -> FilePublic:
        return cls(id=f.id, uuid=f.uuid, filename=f.filename, bytes=f.bytes, sha256=f.sha256, purpose=f.purpose,
                   created_at=int(f.created_at.timestamp()))


class FileDeleted(BaseModel):
    """OpenAI's answer to a file's deletion (what its SDK's `files.delete` reads)."""

    id: str
    object: Literal["file"] = "file"
    deleted: Literal[True] = True


class FileList(BaseModel):
    """The files, newest first, in OpenAI's page shape: every file in one page."""

    object: Literal["list"] = "list"
    data: list[FilePublic]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None

    @classmethod
    def of(cls, files: list[File]) -> FileList:
        data = [FilePublic.of(f) for f in files]
        return cls(data=data, first_id=data[0].id if data else None, last_id=data[-1].id if data else None)


class DatasetCreate(Request):
    name: DatasetName
    file_ids: list[Ident] = Field(min_length=1, max_length=100)
    format: DataFormatName = "auto"


class DatasetPublic(BaseModel):
    id: str
    object: str = "dataset"
    name: str
    file_ids: list[str]
    format: str
    status: Literal["validating", "ready", "invalid"]
    examples: int | None
    tokens_est: int | None
    bytes: int | None
    errors: list[dict[str, Any]] = Field(description="Line-numbered problems when invalid.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, d: Dataset) -> DatasetPublic:
        return cls(id=d.id, name=d.name, file_ids=list(d.file_ids), format=d.format, status=d.status,
                   examples=d.examples, tokens_est=d.tokens_est, bytes=d.bytes, errors=list(d.errors or []),
                   created_at=d.created_at, updated_at=d.updated_at)


class PreviewRow(BaseModel):
    file_index: int
    line: int
    example: dict[str, Any]


class BaseModelCreate(Request):
    source: Reference = Field(description="A folder or .gguf file under a configured model root, or a hub id.")
    kind: Literal["auto", "local", "gguf", "hub"] = "auto"
    name: Name | None = None
    description: Description | None = None


class BaseModelPublic(BaseModel):
    id: str
    object: str = "base_model"
    source_kind: str
    source: str
    name: str | None
    description: str | None
    architecture: str | None
    parameters: int | None
    context_length: int | None
    methods: list[str]
    defaults: dict[str, Any]
    created_at: datetime | None

    @classmethod
    def of(cls, m: BaseModelInfo) -> BaseModelPublic:
        return cls(id=m.id, source_kind=m.source_kind, source=m.source, name=m.name, description=m.description,
                   architecture=m.architecture, parameters=m.parameters, context_length=m.context_length,
                   methods=m.methods, defaults=m.defaults, created_at=m.created_at)


class Lineage(BaseModel):
    base_model: str
    datasets: list[Any]
    job_id: str | None


class TrainedModelPublic(BaseModel):
    """A trained model; `created` and `owned_by` are OpenAI's words for a model (its SDK's models.list)."""

    id: str
    object: str = "model"
    created: int = Field(description="Unix seconds (OpenAI's); created_at is the same instant.")
    owned_by: str = Field(description="The organization that trained it.")
    kind: str
    lineage: Lineage
    meta: dict[str, Any]
    created_at: datetime
    active: bool = Field(default=False, description="Activated: it answers /v1/chat/completions.")
    provider_model: str | None = Field(default=None, description="The name it also answers to, when activated "
                                                                 "with one.")

    @classmethod
    def of(cls, m: TrainedModel, activation: ModelActivation | None = None) -> TrainedModelPublic:
        lineage = Lineage(base_model=m.base_model, datasets=list(m.datasets or []), job_id=m.job_id)
        return cls(id=m.id, created=_unix(m.created_at), owned_by=m.org_id, kind=m.kind, lineage=lineage,
                   meta=m.meta or {}, created_at=m.created_at, active=activation is not None,
                   provider_model=activation.provider_model if activation else None)


class ServableBaseModelPublic(BaseModel):
    """A base model in /v1/models, which OpenAI clients list to find what they may ask: it answers
    /v1/chat/completions by its id. `kind` is `base`; the rest is at /v1/base-models/{id}."""

    id: str
    object: str = "model"
    created: int
    owned_by: str = Field(description="`tuneyard` for a built-in model, else the organization that registered it.")
    kind: Literal["base"] = "base"
    source_kind: str
    description: str | None

    @classmethod
    def of(cls, m: BaseModelInfo, org_id: str) -> ServableBaseModelPublic:
        return cls(id=m.id, created=_unix(m.created_at) if m.created_at else 0,
                   owned_by="tuneyard" if m.source_kind == "builtin" else org_id, source_kind=m.source_kind,
                   description=m.description)


def _unix(when: datetime) -> int:
    return int(when.replace(tzinfo=UTC).timestamp()) if when.tzinfo is None else int(when.timestamp())


class StatsPublic(BaseModel):
    jobs_by_status: dict[str, int]
    queue_depth: int
    models: int
    datasets: int
    workers_alive: int
    memory_estimates: dict[str, Any] = Field(default_factory=dict, description=(
        "How the memory estimates held against your finished jobs' measured peaks: jobs, mean_error_pct "
        "(signed), mean_abs_error_pct, worst_abs_error_pct."))

    @classmethod
    def of(cls, s: Stats, memory_estimates: dict[str, Any] | None = None) -> StatsPublic:
        return cls(jobs_by_status=s.jobs_by_status, queue_depth=s.queue_depth, models=s.models,
                   datasets=s.datasets, workers_alive=s.workers_alive, memory_estimates=memory_estimates or {})
