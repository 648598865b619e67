"""Import a trained model into a local Ollama: its verified GGUF export, pushed and created."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tuneyard.errors import SpecError
from tuneyard.export import ollama
from tuneyard.store import catalog
from tuneyard.store import exports as store
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict
from tuneyard.store.ids import utcnow
from tuneyard.store.tables import ModelExport


@dataclass(frozen=True)
class OllamaImport:
    model_id: str
    export_id: str
    ollama_name: str
    digest: str
    imported_at: datetime


def import_model(db: Database, org_id: str, model_id: str, *, ollama_url: str, model_name: str | None,
                 export_id: str | None) -> OllamaImport:
    """Check the URL (loopback only, before any connection), then push and create in Ollama."""
    target = ollama.check_loopback_url(ollama_url)
    name = ollama.check_model_name(model_name or model_id)
    catalog.get_trained_model(db, org_id, model_id)
    export = _gguf_export(db, org_id, model_id, export_id)
    manifest = export.manifest or {}
    gguf_name = manifest["gguf_file"]
    sha256 = manifest["files"][gguf_name]["sha256"]
    try:
        ollama.import_gguf(target, Path(export.path) / gguf_name, sha256, name, manifest.get("ollama") or {})
    except ollama.OllamaError as exc:
        # a 422 naming the URL, with Ollama's words: a 5xx would hide them, and the server the request
        # points at is the thing for the user to fix
        raise SpecError([{"field": "ollama_url", "message": exc.message}]) from exc
    return OllamaImport(model_id, export.id, name, f"sha256:{sha256}", utcnow())


def _gguf_export(db: Database, org_id: str, model_id: str, export_id: str | None) -> ModelExport:
    if export_id is not None:
        row = store.get_export(db, org_id, model_id, export_id)
        if row.format != "gguf" or row.status != store.COMPLETED:
            raise Conflict(f"export {export_id} is not a completed GGUF export", export_id=export_id)
        return row
    for row in store.list_exports(db, org_id, model_id):
        if row.format == "gguf" and row.status == store.COMPLETED:
            return row
    raise Conflict(f"model {model_id} has no completed GGUF export yet: export it as gguf first",
                   model_id=model_id)
