"""Archetype AI's fine-tune jobs (reference document 004), at /v0.5/fine-tune/jobs.

`GET /v0.5/fine-tune/jobs/{job_id}` answers the record exactly as documented (name, id, uuid,
org_uuid, status, config {model, datasets [{name, split, file_ids}]}, created_at, updated_at,
inference_config_path); a job_id outside 1–64 characters is 400. Beside it, in the same style:
`POST` (`{name, config: {model, datasets}}`, file ids from /v1/files), the list, and `POST
.../{job_id}/cancel`.

Ids: `ftj-<name>-<8 hex>`, the 8 hex being the start of the job's UUID (shown in `uuid`), so every
job has one whichever API made it; routes take it, the UUID or the native id. A dataset's files
become a tuneyard dataset of exactly those files (made once, named after their ids, and reused):
`train` files are trained on, `validation` files are the eval set, `test` files are recorded with
the job and not trained on. `org_uuid` is derived from the organization's id (uuid5), as
organizations have no UUID of their own. `inference_config_path` is null until the job has a
model, then the URL of a YAML inference config served here (`/inference-config`).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path as FsPath
from typing import Annotated, Any, Literal

import anyio
import yaml
from fastapi import APIRouter, Depends, Path, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tuneyard.api.conditional import json_answer
from tuneyard.api.deps import Bearer, Caller, Context, JobReader, checked_id, get_job_reader
from tuneyard.api.dialects import statuses
from tuneyard.api.dialects.base import Dialect
from tuneyard.api.dialects.http import (
    BAD_REQUEST,
    RESPONSES,
    iso_z,
    json_body,
    listing,
    parse,
    render_envelope_400,
)
from tuneyard.api.schemas.common import NOT_MODIFIED
from tuneyard.services import datasets as dataset_service
from tuneyard.services import jobs, lookup
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.services.model_inputs import resolve_base_model
from tuneyard.services.submission import JobRequest
from tuneyard.settings import Settings
from tuneyard.spec.text import Ident, Reference
from tuneyard.store import datasets as dataset_store
from tuneyard.store import jobs as job_store
from tuneyard.store import uuids
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, InvalidTransition, NotFound
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Dataset, Job, JobEvent, TrainedModel
from tuneyard.store.tenancy import Principal
from tuneyard.training.models.chat_template import CHATML_TEMPLATE

DIALECT = "archetype"
PREFIX = "/v0.5/fine-tune/jobs"
STATUS_NAMES = statuses.ARCHETYPE
ORG_NAMESPACE = uuid.UUID("3b8c54a1-6f0e-4d47-9a8e-7c1d2e5f9b20")
"""Under which an organization's id becomes its `org_uuid` (uuid5): stable, and the same everywhere."""
NAME_MAX = 51
"""So that `ftj-` + name + `-` + 8 hex stays within the 64 characters a job_id may have."""
NAME_PATTERN = rf"^[A-Za-z0-9](?:[A-Za-z0-9_-]{{0,{NAME_MAX - 2}}}[A-Za-z0-9])?$"
JOB_ID = re.compile(r"^ftj-(?P<name>.+)-(?P<hex>[0-9a-f]{8})$")
GENERATION_DEFAULTS = {"max_tokens": 256, "temperature": 0.7, "top_p": 1.0}
"""What the inference config proposes for sampling; the serving API's own defaults."""

router = APIRouter(prefix=PREFIX, tags=["archetype"], responses=RESPONSES)
JobIdParam = Annotated[str, Path(min_length=1, max_length=64, description="ftj-<name>-<8 hex>, the UUID or the id")]


class ArchetypeDataset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    split: Literal["train", "validation", "test"]
    file_ids: list[Ident] = Field(min_length=1, max_length=64)


class ArchetypeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: Reference
    datasets: list[ArchetypeDataset] = Field(min_length=1, max_length=16)


class ArchetypeJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)
    config: ArchetypeConfig


@router.post("", status_code=status.HTTP_201_CREATED, responses=BAD_REQUEST,
             openapi_extra={"requestBody": json_body(ArchetypeJobRequest)})
async def create_job(request: Request, context: Context, caller: Caller) -> dict[str, Any]:
    """Start a fine-tune job from files uploaded to /v1/files: 201 with its record."""
    body = await parse(request, ArchetypeJobRequest)
    view = await anyio.to_thread.run_sync(_submit, context.db, context.settings, caller, body)
    return await anyio.to_thread.run_sync(record, context.db, view, _base(request))


def _submit(db: Database, settings: Settings, caller: Principal, body: ArchetypeJobRequest) -> JobView:
    files = _resolve_files(db, caller.org_id, body.config.datasets)
    if not any(d.split == "train" for d in body.config.datasets):
        raise InvalidRequest([{"field": "config.datasets", "message": "give at least one dataset of split train"}])
    base_model = lookup.model_reference(db, caller.org_id, body.config.model)
    try:  # before any dataset is made for the files: a request refused here leaves nothing behind
        resolve_base_model(db, settings, caller.org_id, base_model)
    except NotFound:
        raise InvalidRequest([{"field": "config.model", "message": (
            f"no model {body.config.model!r}: give a base model from GET /base-models, or a checkpoint's "
            "or trained model's id")}]) from None
    refs = []
    for d, file_ids in zip(body.config.datasets, files, strict=True):
        if d.split != "test":  # no test evaluation here: its files are kept with the job, not trained on
            dataset = _dataset_of(db, caller.org_id, file_ids)
            refs.append({"id": dataset.id, "split": "train" if d.split == "train" else "eval"})
    spec = {"type": "finetune", "base_model": base_model,
            "datasets": refs, "method": "lora"}
    shown = [{"name": d.name, "split": d.split, "file_ids": list(d.file_ids)} for d in body.config.datasets]
    job = JobRequest(spec=spec, name=body.name, submitted=body.model_dump(mode="json"), dialect=DIALECT,
                     labels={"model": body.config.model, "datasets": shown})
    try:
        return jobs.submit_job(db, settings, caller, job).job
    except InvalidRequest as refused:
        raise InvalidRequest([{**p, "field": _field(str(p.get("field", "")))} for p in refused.problems]) from None


def _field(field: str) -> str:
    """The service's field paths in Archetype's words."""
    if field == "base_model":
        return "config.model"
    if field.startswith("datasets"):
        return "config." + field
    return field


def _resolve_files(db: Database, org_id: str, datasets: list[ArchetypeDataset]) -> list[list[str]]:
    """Each dataset's files as native ids (by id or UUID), every missing one reported at once."""
    problems = []
    found: list[list[str]] = []
    for i, d in enumerate(datasets):
        ids = []
        for j, ref in enumerate(d.file_ids):
            try:
                ids.append(lookup.native_id(db, org_id, "file", ref))
            except NotFound:
                problems.append({"field": f"config.datasets.{i}.file_ids.{j}", "message": f"no file {ref}"})
        found.append(ids)
    if problems:
        raise InvalidRequest(problems)
    return found


def _dataset_of(db: Database, org_id: str, file_ids: list[str]) -> Any:
    """The organization's dataset of exactly these files: made once, named after them, reused after."""
    name = "archetype-" + hashlib.sha256("\n".join(file_ids).encode()).hexdigest()[:24]
    try:
        return dataset_store.get_dataset_by_name(db, org_id, name)
    except NotFound:
        pass
    try:
        return dataset_service.create_dataset(db, org_id, dataset_service.DatasetCreate(name=name, file_ids=file_ids))
    except Conflict:  # made at the same moment by another request for the same files
        return dataset_store.get_dataset_by_name(db, org_id, name)


@router.get("")
def list_jobs(context: Context, caller: Caller, request: Request) -> dict[str, Any]:
    """The organization's fine-tune jobs, newest first."""
    # Not conditional, unlike the job: a record shows another API's job's datasets, whose deletion moves no
    # revision, and naming them means reading every job's spec; 004 documents no list to poll besides.
    found = jobs.list_jobs(context.db, context.settings, job_store.JobQuery(caller.org_id, limit=None)).items
    return listing("jobs", [record(context.db, v, _base(request)) for v in found])


async def _job_reader(job_id: JobIdParam, request: Request, credentials: Bearer) -> JobReader:
    # deps.JobRead with the job_id bounded as Archetype bounds it, and its ftj- ids found.
    return (await get_job_reader(job_id, request, credentials)).finding(_find)


ArchetypeJobRead = Annotated[JobReader, Depends(_job_reader)]


@router.get("/{job_id}", responses={**BAD_REQUEST, **NOT_MODIFIED})  # 400: a job_id outside 1-64 characters
async def get_job(read: ArchetypeJobRead, request: Request) -> Response:
    """The full record of one fine-tune job of the organization. Its `ETag` changes with the job: sent
    back as `If-None-Match`, a 304 while nothing has (as /v1/jobs/{id})."""
    base = _base(request)

    def varies(session: Session, job: Job) -> str:
        # Its URLs name the host the client asked; a job made through another API shows its datasets'
        # rows, which a dataset's deletion changes without moving the job's revision (their ids are
        # read by key: no telemetry). Archetype's own jobs show the datasets their request named.
        if ((job.labels or {}).get(DIALECT) or {}).get("datasets") is not None:
            return base
        return f"{base}\0{json.dumps(_datasets_of(session, job.org_id, job.spec))}"

    answer = await read.unless_unchanged(
        lambda session, job: record_in(session, jobs.view_in(session, read.settings, job), base), varies)
    return answer.response(json_answer)


@router.post("/{job_id}/cancel", responses=BAD_REQUEST)
def cancel_job(job_id: JobIdParam, context: Context, caller: Caller, request: Request) -> dict[str, Any]:
    """Cancel the job: CANCELLED at once when no worker holds it, else STOPPING until its runner ends."""
    view = _view(context, caller, job_id)
    try:
        cancelled = jobs.cancel_job(context.db, context.settings, caller.org_id, view.id)
    except InvalidTransition as refused:
        word = STATUS_NAMES[JobStatus(refused.current)]
        raise Conflict(f"job {public_id(view)} is {word}: it cannot be cancelled", id=public_id(view),
                       status=word) from None
    return record(context.db, cancelled, _base(request))


@router.get("/{job_id}/inference-config", response_class=Response,
            responses={200: {"content": {"application/yaml": {}}}, **BAD_REQUEST})
def get_inference_config(job_id: JobIdParam, context: Context, caller: Caller, request: Request) -> Response:
    """The YAML that serves the job's model: where it is, its base, the adapter, chat template and
    generation defaults. 404 until the job has a model."""
    view = _view(context, caller, job_id)
    if view.output_model_id is None:
        raise NotFound("inference config of job", public_id(view))
    with context.db.read() as session:
        model = session.get(TrainedModel, view.output_model_id)
    if model is None:
        raise NotFound("inference config of job", public_id(view))
    base = _base(request)
    asked = view.labels.get(DIALECT) or {}
    config = {
        "job": {"id": public_id(view), "uuid": view.uuid},
        "model": {"id": model.id, "uuid": model.uuid, "kind": model.kind,
                  "location": f"{base}/v1/jobs/{view.id}/download", "format": "safetensors"},
        "base_model": asked.get("model", view.spec.get("base_model")),
        "adapter": {"type": "lora", "merged": False} if model.kind == "adapter" else None,
        "chat_template": _chat_template(model.path),
        "serving": {"endpoint": f"{base}/v1/chat/completions", "model": model.id},
        "generation": dict(GENERATION_DEFAULTS),
    }
    return Response(yaml.safe_dump(config, sort_keys=False), media_type="application/yaml")


def _chat_template(folder: str) -> str:
    """The model's own chat template (its tokenizer_config.json), else the ChatML one tuneyard trains
    tokenizers without a template on (training/models/chat_template.py)."""
    try:
        found = json.loads((FsPath(folder) / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
    except (OSError, ValueError, AttributeError):
        found = None
    return found if isinstance(found, str) else CHATML_TEMPLATE


def _view(context: Any, caller: Principal, job_id: str) -> JobView:
    """The job `job_id` names (an ftj- id, the UUID or the native id) in the caller's organization."""
    with context.db.read() as session:
        return jobs.view_in(session, context.settings, _find(session, caller.org_id, job_id))


def _find(session: Session, org_id: str, job_id: str) -> Job:
    """The organization's job by an ftj- id, else by its UUID or native id (`deps.JobFinder`)."""
    match = JOB_ID.match(job_id)
    if not match:
        return job_store.owned_job(session, org_id, checked_id("job", job_id))
    named = [j for j in uuids.jobs_with_uuid_prefix(session, org_id, match["hex"]) if slug(j.name) == match["name"]]
    if len(named) != 1:
        raise NotFound("job", job_id)
    return named[0]


def slug(name: str | None) -> str:
    """A job's name as an ftj- id carries it: Archetype's own names unchanged, others' made id-safe."""
    if name and re.fullmatch(NAME_PATTERN, name):
        return name
    cut = re.sub(r"[^a-z0-9]+", "-", (name or "").lower()).strip("-")[: NAME_MAX].strip("-")
    return cut or "job"


def public_id(view: JobView) -> str:
    return f"ftj-{slug(view.name)}-{view.uuid[:8]}"


def org_uuid(org_id: str) -> str:
    return str(uuid.uuid5(ORG_NAMESPACE, org_id))


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def record(db: Database, view: JobView, base: str) -> dict[str, Any]:
    """The job as document 004 prints it."""
    with db.read() as session:
        return record_in(session, view, base)


def record_in(session: Session, view: JobView, base: str) -> dict[str, Any]:
    """The same, inside the caller's read."""
    asked = view.labels.get(DIALECT) or {}
    updated = session.scalar(select(func.max(JobEvent.created_at)).where(JobEvent.job_id == view.id))
    datasets = asked.get("datasets")
    if datasets is None:  # a job made through another API: its datasets' files, as train or validation
        datasets = _datasets_of(session, view.org_id, view.spec)
    has_model = view.output_model_id is not None
    return {
        "name": view.name or slug(view.name),
        "id": public_id(view),
        "uuid": view.uuid,
        "org_uuid": org_uuid(view.org_id),
        "status": STATUS_NAMES[view.status],
        "config": {"model": asked.get("model", view.spec.get("base_model")), "datasets": datasets},
        "created_at": iso_z(view.created_at),
        "updated_at": iso_z(max(t for t in (updated, view.created_at, view.started_at, view.finished_at) if t)),
        "inference_config_path": f"{base}{PREFIX}/{public_id(view)}/inference-config" if has_model else None,
    }


def _datasets_of(session: Session, org_id: str, spec: dict[str, Any]) -> list[dict[str, Any]]:
    shown = []
    for ref in spec.get("datasets") or []:
        if not isinstance(ref, dict):
            continue
        dataset = None
        if isinstance(ref.get("id"), str):
            dataset = session.get(Dataset, ref["id"])
        elif isinstance(ref.get("name"), str):
            dataset = session.scalars(select(Dataset).where(
                Dataset.org_id == org_id, Dataset.name == ref["name"])).first()
        if dataset is None or dataset.org_id != org_id:
            continue
        shown.append({"name": dataset.name, "split": "validation" if ref.get("split") == "eval" else "train",
                      "file_ids": list(dataset.file_ids)})
    return shown


def dialect() -> Dialect:
    return Dialect(name=DIALECT, prefixes=(PREFIX,), router=router, render_error=render_envelope_400,
                   status_names=STATUS_NAMES)

