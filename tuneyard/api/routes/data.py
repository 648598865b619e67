"""/v1/files (uploads) and /v1/datasets (named, validated sets of files)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Response, UploadFile, status
from fastapi.responses import FileResponse

from tuneyard.api.deps import Caller, Context, DatasetId, FileId
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES, ErrorEnvelope, ListOf
from tuneyard.api.schemas.resources import DatasetCreate, DatasetPublic, FileDeleted, FileList, FilePublic, PreviewRow
from tuneyard.services import datasets, files
from tuneyard.store.quotas import Quotas

router = APIRouter(responses=ERROR_RESPONSES)


@router.post("/v1/files", status_code=status.HTTP_201_CREATED, response_model=FilePublic, tags=["files"],
             responses=BODY_RESPONSES)
def upload_file(
    file: UploadFile, context: Context, caller: Caller, purpose: Annotated[files.Purpose, Form(
        description="What the file is for; an empty field is the default, as for any form field",
        json_schema_extra={"enum": [*files.PURPOSES, ""]})] = "fine-tune",
) -> FilePublic:
    """Upload one file (multipart field `file`); larger than the server's limit is 413."""
    row = files.upload_file(context.db, context.settings, caller.org_id, file.filename, file.file, purpose)
    return FilePublic.of(row)


@router.get("/v1/files", response_model=FileList, tags=["files"])
def list_files(
    context: Context, caller: Caller,
    purpose: Annotated[files.Purpose | None, Query(description="Only the files of this purpose.")] = None,
) -> FileList:
    """Every file of the organization, newest first (OpenAI's list shape, in one page)."""
    return FileList.of(files.list_files(context.db, caller.org_id, purpose))


@router.get("/v1/files/{file_id}", response_model=FilePublic, tags=["files"])
def get_file(file_id: FileId, context: Context, caller: Caller) -> FilePublic:
    return FilePublic.of(files.get_file(context.db, caller.org_id, file_id))


@router.get("/v1/files/{file_id}/content", tags=["files"], response_class=FileResponse,
            responses={200: {"description": "The file's bytes, as uploaded.",
                             "content": {"application/octet-stream": {}}}})
def get_file_content(file_id: FileId, context: Context, caller: Caller) -> FileResponse:
    """The file's bytes exactly as uploaded (OpenAI's `files.content`), with their sha256 in
    `X-Checksum-SHA256`."""
    row, path = files.file_content(context.db, caller.org_id, file_id)
    return FileResponse(path, filename=row.filename, media_type="application/octet-stream",
                        headers={"X-Checksum-SHA256": row.sha256})


@router.delete("/v1/files/{file_id}", response_model=FileDeleted, tags=["files"],
               responses={409: {"model": ErrorEnvelope, "description":
                                "CONFLICT: a dataset lists the file or a job that may still run reads it; "
                                "`details` names them."}})
def delete_file(file_id: FileId, context: Context, caller: Caller) -> FileDeleted:
    """Delete the file and its bytes (OpenAI's `files.delete`). Refused while a dataset or an unfinished
    job uses it: they read the upload itself, so deleting it would lose their data."""
    return FileDeleted(id=files.delete_file(context.db, caller.org_id, file_id).id)


@router.post("/v1/datasets", status_code=status.HTTP_201_CREATED, response_model=DatasetPublic, tags=["datasets"],
             responses=BODY_RESPONSES)
def create_dataset(body: DatasetCreate, context: Context, caller: Caller) -> DatasetPublic:
    """Make a dataset of uploaded files; it is `validating`, then `ready` or `invalid` (with errors)."""
    request = datasets.DatasetCreate(body.name, body.file_ids, body.format)
    quotas = Quotas.of(context.settings)
    return DatasetPublic.of(datasets.create_dataset(context.db, caller.org_id, request, quotas=quotas))


@router.get("/v1/datasets", response_model=ListOf[DatasetPublic], tags=["datasets"])
def list_datasets(context: Context, caller: Caller) -> ListOf[DatasetPublic]:
    return ListOf(data=[DatasetPublic.of(d) for d in datasets.list_datasets(context.db, caller.org_id)])


@router.get("/v1/datasets/{dataset_id}", response_model=DatasetPublic, tags=["datasets"])
def get_dataset(dataset_id: DatasetId, context: Context, caller: Caller) -> DatasetPublic:
    return DatasetPublic.of(datasets.get_dataset(context.db, caller.org_id, dataset_id))


@router.get("/v1/datasets/{dataset_id}/preview", response_model=ListOf[PreviewRow], tags=["datasets"])
def preview_dataset(dataset_id: DatasetId, context: Context, caller: Caller,
                    limit: Annotated[int, Query(ge=1, le=100)] = 10) -> ListOf[PreviewRow]:
    """The first examples, as uploaded, with where they came from."""
    rows = datasets.preview_dataset(context.db, caller.org_id, dataset_id, limit)
    return ListOf(data=[PreviewRow(**r) for r in rows])


@router.delete("/v1/datasets/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
               tags=["datasets"])
def delete_dataset(dataset_id: DatasetId, context: Context, caller: Caller) -> Response:
    datasets.delete_dataset(context.db, caller.org_id, dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
