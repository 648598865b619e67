"""What a job produced: its result card, the files of its run folder, and the model as one archive."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, StreamingResponse

from tuneyard.api.deps import Context, OwnedJob
from tuneyard.api.schemas.common import ERROR_RESPONSES, ListOf
from tuneyard.api.schemas.jobs import ArtifactPublic
from tuneyard.services import jobs, runs

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["jobs"], responses=ERROR_RESPONSES)


@router.get("/result")
def get_result(job: OwnedJob, context: Context) -> dict[str, Any]:
    """The result card (perplexity before/after, loss, parameters, compute); 404 until it exists."""
    return jobs.job_result(context.db, context.settings, job.org_id, job.id)


@router.get("/artifacts", response_model=ListOf[ArtifactPublic])
def list_artifacts(job: OwnedJob, context: Context) -> ListOf[ArtifactPublic]:
    """Every file of the run folder (final model, checkpoints, spec, result, logs), by path."""
    found = runs.list_artifacts(runs.run_dir(context.settings, job.id))
    return ListOf(data=[ArtifactPublic(path=a.path, bytes=a.bytes) for a in found])


@router.get("/artifacts/{path:path}", response_class=FileResponse)
def get_artifact(job: OwnedJob, context: Context, path: str) -> FileResponse:
    """One file of the run folder; paths leaving the folder are not found."""
    target = runs.safe_child(runs.run_dir(context.settings, job.id), path)
    return FileResponse(target, filename=target.name, media_type="application/octet-stream")


@router.get("/download", response_class=StreamingResponse)
def download(job: OwnedJob, context: Context) -> StreamingResponse:
    """The trained model folder as one .tar.gz, streamed."""
    folder = jobs.model_folder(context.db, context.settings, job)
    name = job.output_model_id or job.id
    headers = {"Content-Disposition": f'attachment; filename="{name}.tar.gz"'}
    return StreamingResponse(runs.stream_tar_gz(folder, name), media_type="application/gzip", headers=headers)
