"""Bodies and views of model exports and of the Ollama import."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from tuneyard.api.schemas.common import Request
from tuneyard.export.formats import EXPORT_FORMATS, QUANTIZATIONS
from tuneyard.export.ollama import DEFAULT_OLLAMA_URL, MODEL_NAME_PATTERN
from tuneyard.spec.text import Ident, Reference
from tuneyard.store.tables import ModelExport


class ExportCreate(Request):
    format: Ident = Field(description=f"One of: {', '.join(EXPORT_FORMATS.names())}.")
    quantization: Ident | None = Field(
        default=None, description=f"GGUF only, one of {', '.join(QUANTIZATIONS.names())}; q8_0 when left out.")
    variant: Literal["merged", "adapter"] = Field(
        default="merged", description="merged: full weights (a LoRA merged into its base); adapter: a LoRA "
                                      "model's adapter as trained (safetensors only).")


class ExportFile(BaseModel):
    name: str
    bytes: int
    sha256: str


class ExportPublic(BaseModel):
    id: str
    object: str = "model.export"
    model_id: str
    format: str
    quantization: str | None
    variant: str
    status: str
    files: list[ExportFile]
    size_bytes: int
    checksum: str | None = Field(description="sha256 of the main file (the GGUF, or the weights).")
    verification: dict[str, Any] | None = Field(
        description="GGUF: tokenization identical, top-1 agreement, max |Δlogit|, the bound, passed.")
    error: dict[str, Any] | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: ModelExport) -> ExportPublic:
        manifest = row.manifest or {}
        files = [ExportFile(name=name, bytes=info["bytes"], sha256=info["sha256"])
                 for name, info in sorted((manifest.get("files") or {}).items())]
        main = manifest.get("gguf_file") or next(
            (f.name for f in files if f.name.endswith(".safetensors")), None)
        checksum = next((f.sha256 for f in files if f.name == main), None)
        verification = manifest.get("verification")
        if verification is None and row.error:
            verification = (row.error.get("details") or {}).get("verification")
        return cls(id=row.id, model_id=row.model_id, format=row.format, quantization=row.quantization,
                   variant=row.variant, status=row.status, files=files, size_bytes=sum(f.bytes for f in files),
                   checksum=checksum, verification=verification, error=row.error, created_at=row.created_at,
                   finished_at=row.finished_at)


OllamaName = Annotated[str, Field(pattern=f"^{MODEL_NAME_PATTERN}$", max_length=129)]
"""What Ollama takes as a model name (the pattern the import checks, so the schema says it)."""


class OllamaImportCreate(Request):
    ollama_url: Reference = Field(default=DEFAULT_OLLAMA_URL,
                                  description="The Ollama server: a loopback URL only (localhost, 127.x.y.z, [::1]).")
    model_name: OllamaName | None = Field(default=None, description="The name in Ollama; the model id when left out.")
    export_id: Ident | None = Field(default=None, description="A completed GGUF export; the newest when left out.")


class OllamaImportPublic(BaseModel):
    object: str = "model.ollama_import"
    model_id: str
    export_id: str
    ollama_name: str
    digest: str
    imported_at: datetime
