"""/v1/models/{id}/exports (verified exports of a trained model) and /v1/models/{id}/ollama."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.responses import FileResponse, StreamingResponse

from tuneyard.api.deps import Caller, Context, ModelId, checked_id
from tuneyard.api.schemas.common import BODY_RESPONSES, ERROR_RESPONSES, ErrorEnvelope, ListOf
from tuneyard.api.schemas.exports import ExportCreate, ExportPublic, OllamaImportCreate, OllamaImportPublic
from tuneyard.services import export_downloads, exports, models, ollama_import, runs

router = APIRouter(responses=ERROR_RESPONSES)


def _export_id(export_id: str, _caller: Caller) -> str:  # the key is checked first
    return checked_id("export", export_id)


ExportId = Annotated[str, Depends(_export_id)]


def _owned_model(model_id: ModelId, context: Context, caller: Caller) -> str:
    # Resolved before the body is validated: another organization's model is a 404 whatever was sent.
    models.get_model(context.db, caller.org_id, model_id)
    return model_id


OwnedModelId = Annotated[str, Depends(_owned_model)]


@router.post("/v1/models/{model_id}/exports", status_code=status.HTTP_202_ACCEPTED, response_model=ExportPublic,
             tags=["models"], responses=BODY_RESPONSES)
def create_export(model_id: OwnedModelId, body: ExportCreate, context: Context, caller: Caller) -> ExportPublic:
    """Export the model (safetensors, or GGUF verified by llama.cpp against transformers). Runs in the
    background: poll the export until `status` is completed or failed (a failed GGUF shows its figures)."""
    row = exports.request_export(context.db, context.settings, caller.org_id, model_id, format=body.format,
                                 quantization=body.quantization, variant=body.variant)
    return ExportPublic.of(row)


@router.get("/v1/models/{model_id}/exports", response_model=ListOf[ExportPublic], tags=["models"])
def list_exports(model_id: ModelId, context: Context, caller: Caller) -> ListOf[ExportPublic]:
    """The model's exports, newest first: size, format, checksum, verification."""
    return ListOf(data=[ExportPublic.of(e) for e in exports.list_exports(context.db, caller.org_id, model_id)])


@router.get("/v1/models/{model_id}/exports/{export_id}", response_model=ExportPublic, tags=["models"])
def get_export(model_id: ModelId, export_id: ExportId, context: Context, caller: Caller) -> ExportPublic:
    return ExportPublic.of(exports.get_export(context.db, caller.org_id, model_id, export_id))


@router.post("/v1/models/{model_id}/ollama", response_model=OllamaImportPublic, tags=["models"],
             responses=BODY_RESPONSES)
def import_to_ollama(model_id: OwnedModelId, body: OllamaImportCreate, context: Context,
                     caller: Caller) -> OllamaImportPublic:
    """Push the model's verified GGUF export into an Ollama server on this machine (loopback URLs only,
    checked before any connection; redirects are not followed) and create it there."""
    done = ollama_import.import_model(context.db, caller.org_id, model_id, ollama_url=body.ollama_url,
                                      model_name=body.model_name, export_id=body.export_id)
    return OllamaImportPublic(model_id=done.model_id, export_id=done.export_id, ollama_name=done.ollama_name,
                              digest=done.digest, imported_at=done.imported_at)


@router.get("/v1/models/{model_id}/exports/{export_id}/download", tags=["models"],
            responses={200: {"description": "The GGUF file, or the export folder as a .tar.gz.", "content": {
                "application/octet-stream": {}, "application/gzip": {}}},
                       409: {"model": ErrorEnvelope, "description": "CONFLICT: the export is not completed."}})
def download_export(model_id: ModelId, export_id: ExportId, context: Context, caller: Caller) -> Response:
    """Download a completed export: a GGUF export's file, with its sha256 in `X-Checksum-SHA256` (as its
    manifest recorded it); a safetensors export's folder as one .tar.gz, with the sha256 of the
    manifest.json inside, which lists every file's, in `X-Manifest-SHA256`."""
    found = export_downloads.export_download(context.db, context.settings, caller.org_id, model_id, export_id)
    if found.sha256 is not None:
        return FileResponse(found.path, filename=found.name, media_type="application/octet-stream",
                            headers={"X-Checksum-SHA256": found.sha256})
    headers = {"Content-Disposition": f'attachment; filename="{found.name}.tar.gz"',
               **({"X-Manifest-SHA256": found.manifest_sha256} if found.manifest_sha256 else {})}
    return StreamingResponse(runs.stream_tar_gz(found.path, found.name), media_type="application/gzip",
                             headers=headers)
