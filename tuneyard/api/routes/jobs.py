"""/v1/jobs: submit, list, read, and a user's requests (stop, cancel, resume, delete)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status
from sqlalchemy.orm import Session

from tuneyard.api.deps import Caller, Context, JobRead, ListRead, OwnedJob
from tuneyard.api.errors import rate_limit_headers
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES, NOT_MODIFIED
from tuneyard.api.schemas.job_create import job_request
from tuneyard.api.schemas.jobs import JobPage, JobPublic, ResumeRequest
from tuneyard.services import jobs, model_ops
from tuneyard.services.errors import InvalidRequest
from tuneyard.spec import JOB_TYPES
from tuneyard.spec.text import KEY_MAX, PRINTABLE_PATTERN, Ident
from tuneyard.store.jobs import JobQuery
from tuneyard.store.status import JobStatus
from tuneyard.store.tenancy import Principal

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=ERROR_RESPONSES)

# Documented only: the header is checked with the body's service fields (job_create), so that its
# problems are reported with theirs in one 422; these are the bounds that check enforces.
KEY_SCHEMA = {"minLength": 1, "maxLength": KEY_MAX, "pattern": PRINTABLE_PATTERN}
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
"""A cursor is the `next_cursor` of the page before, unpadded base64url; anything else is a 422."""

JobBody = Annotated[dict[str, Any], Body(
    description=("The engine's spec (`type`, `base_model`, `datasets: [{id} | {name}]`, `method`, "
                 "`hyperparams`) plus `name`, `project_id` and `idempotency_key`."),
    examples=[{"base_model": "tiny-llama", "datasets": [{"name": "my-chats"}], "hyperparams": {"max_steps": 20}}],
)]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=JobPublic,
             responses={200: {"model": JobPublic, "description": "A retry with the same idempotency key."},
                        **BODY_RESPONSES})
def create_job(
    body: JobBody, context: Context, caller: Caller, response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", json_schema_extra=KEY_SCHEMA)] = None,
) -> JobPublic:
    """Queue a job. The whole request is checked first and every problem reported at once (422)."""
    submitted = jobs.submit_job(context.db, context.settings, caller, job_request(body, idempotency_key))
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    rate = submitted.rate
    response.headers.update(rate_limit_headers(rate.limit, rate.remaining, rate.reset_after_s))
    return JobPublic.of(submitted.job)


@router.get("", response_model=JobPage, responses=NOT_MODIFIED)
async def list_jobs(
    read: ListRead,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    type_: Annotated[str | None, Query(alias="type", max_length=40,
                                       json_schema_extra={"enum": list(JOB_TYPES.names())})] = None,
    project_id: Annotated[Ident | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512, pattern=CURSOR_PATTERN)] = None,
) -> Response:
    """The organization's jobs, newest first. Its `ETag` changes with the page (any of its jobs, which
    jobs it holds): send it back as `If-None-Match` for a 304 while nothing has."""
    statuses = (status_.value,) if status_ is not None else ()

    def query(caller: Principal) -> JobQuery:  # after the key check: a stranger's bad filter is a 401
        if type_ is not None and type_ not in JOB_TYPES:
            raise InvalidRequest([{"field": "type", "message": f"expected one of {', '.join(JOB_TYPES.names())}"}])
        return JobQuery(caller.org_id, statuses, type_, project_id, cursor=cursor, limit=limit)

    def page(session: Session, query: JobQuery) -> JobPage:
        found = jobs.list_in(session, read.settings, query)
        return JobPage(data=[JobPublic.of(j) for j in found.items], next_cursor=found.next_cursor,
                       has_more=found.next_cursor is not None)

    answer = await read.unless_unchanged(query, page)
    return answer.response(lambda found: Response(found.model_dump_json(), media_type="application/json"))


@router.get("/{job_id}", response_model=JobPublic, responses=NOT_MODIFIED)
async def get_job(read: JobRead) -> Response:
    """The job. Its `ETag` changes with the job: send it back as `If-None-Match` for a 304 while nothing has."""
    # Why a queued job waits depends on the live workers, not on its row: it is part of the validator.
    answer = await read.unless_unchanged(lambda s, job: JobPublic.of(jobs.view_in(s, read.settings, job)),
                                         varies=lambda s, job: jobs.waiting_reason(s, read.settings, job))
    return answer.response(lambda public: Response(public.model_dump_json(), media_type="application/json"))


@router.post("/{job_id}/stop", response_model=JobPublic)
def stop_job(job: OwnedJob, context: Context) -> JobPublic:
    """Stop gracefully: the runner checkpoints and the job becomes `stopped` (resumable)."""
    return JobPublic.of(jobs.stop_job(context.db, context.settings, job.org_id, job.id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job: OwnedJob, context: Context) -> JobPublic:
    return JobPublic.of(jobs.cancel_job(context.db, context.settings, job.org_id, job.id))


@router.post("/{job_id}/resume", response_model=JobPublic, responses=BODY_RESPONSES)
def resume_job(job: OwnedJob, context: Context, body: Annotated[ResumeRequest | None, Body()] = None) -> JobPublic:
    """Queue a stopped (or failed, checkpointed) job again under the same id."""
    checkpoint = body.checkpoint if body is not None else None
    return JobPublic.of(jobs.resume_job(context.db, context.settings, job.org_id, job.id, checkpoint))


MergeBody = Annotated[dict[str, Any] | None, Body(
    description="Optional service fields of the merge job: `name`, `project_id`, `idempotency_key`.",
    examples=[{"name": "my-model-merged"}],
)]


@router.post("/{job_id}/merge", status_code=status.HTTP_201_CREATED, response_model=JobPublic,
             responses={200: {"model": JobPublic, "description": "A retry with the same idempotency key."},
                        **BODY_RESPONSES})
def merge_job(
    job: OwnedJob, context: Context, caller: Caller, response: Response, body: MergeBody = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", json_schema_extra=KEY_SCHEMA)] = None,
) -> JobPublic:
    """Queue a merge job folding this completed LoRA job's adapter into its base (a `full` model)."""
    fields = body if isinstance(body, dict) else {}
    request = job_request({**fields, **model_ops.merge_body(context.db, job)}, idempotency_key)
    submitted = jobs.submit_job(context.db, context.settings, caller, request)
    if not submitted.created:
        response.status_code = status.HTTP_200_OK
    rate = submitted.rate
    response.headers.update(rate_limit_headers(rate.limit, rate.remaining, rate.reset_after_s))
    return JobPublic.of(submitted.job)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_job(job: OwnedJob, context: Context) -> Response:
    """Delete the job with its artifacts, checkpoints and logs (a running job must be cancelled first)."""
    jobs.delete_job(context.db, context.settings, job.org_id, job.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
