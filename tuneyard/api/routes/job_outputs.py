"""What a job produced: its result card, the files of its run folder, and the model as one archive."""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Response
from fastapi.responses import FileResponse, StreamingResponse

from tuneyard.api.deps import Context, OwnedJob
from tuneyard.api.schemas.common import ERROR_RESPONSES, ListOf
from tuneyard.api.schemas.jobs import ArtifactPublic
from tuneyard.services import jobs, path_display, runs

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
def get_artifact(job: OwnedJob, context: Context, path: str) -> Response:
    """One file of the run folder, the server's paths in its text shown as the job's are (relative to
    the run folder, uploads by name); paths leaving the folder are not found."""
    target = runs.safe_child(runs.run_dir(context.settings, job.id), path)
    shown = path_display.file_as_shown(jobs.display(context.db, context.settings, job), target)
    if shown is None:
        return FileResponse(target, filename=target.name, media_type="application/octet-stream")
    return Response(shown, media_type="application/octet-stream", headers=_attachment(target.name))


@router.get("/download", response_class=StreamingResponse)
def download(job: OwnedJob, context: Context) -> StreamingResponse:
    """The trained model folder as one .tar.gz, streamed, its text files showing no server path."""
    folder = jobs.model_folder(context.db, context.settings, job)
    name = job.output_model_id or job.id
    shown = jobs.display(context.db, context.settings, job)
    archive = runs.stream_tar_gz(folder, name, functools.partial(path_display.file_as_shown, shown))
    return StreamingResponse(archive, media_type="application/gzip", headers=_attachment(f"{name}.tar.gz"))


def _attachment(filename: str) -> dict[str, str]:
    # As Starlette's FileResponse says it: RFC 6266's filename*, when the name is not plain ASCII.
    quoted = quote(filename)
    if quoted != filename:
        return {"Content-Disposition": f"attachment; filename*=utf-8''{quoted}"}
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
