"""Base models: the built-in catalog plus models an organization registered.

A local model may only be registered from under one of Settings.model_roots: a request must not
be able to make the server read an arbitrary path. Hub ids are recorded as given (the runner
fetches them when a hub is reachable).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tuneyard.services.errors import InvalidRequest
from tuneyard.settings import Settings
from tuneyard.spec import METHODS
from tuneyard.store import catalog as store
from tuneyard.store.engine import Database
from tuneyard.store.quotas import Quotas
from tuneyard.training.models import catalog

BUILTIN_NAMESPACE = uuid.UUID("5f0c7d52-8f3e-4d0a-9a55-2b8f3c1e6a41")
"""Built-in models live in code, not in a table with a UUID column: each one's UUID is derived from
its id under this namespace (uuid5), so it is the same on every server and never changes."""

HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


@dataclass(frozen=True)
class BaseModelInfo:
    """A base model as the API shows it, whether built in or registered."""

    id: str
    uuid: str
    """What dialects that say UUID (Felix, Fusion) show; `lookup.model_reference` takes it back."""
    source_kind: str  # builtin | local | gguf | hub
    source: str
    name: str | None = None
    description: str | None = None
    architecture: str | None = None
    parameters: int | None = None
    context_length: int | None = None
    methods: list[str] = field(default_factory=lambda: list(METHODS.names()))
    defaults: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None


def _builtin_info(entry: catalog.BaseModelEntry) -> BaseModelInfo:
    return BaseModelInfo(
        id=entry.id, uuid=builtin_uuid(entry.id), source_kind="builtin", source=entry.id, name=entry.id,
        description=entry.description,
        architecture=entry.architecture, parameters=entry.parameters, context_length=entry.context_length,
        methods=list(entry.methods), defaults={k: dict(v) for k, v in entry.defaults.items()},
    )


def _registered_info(row: store.BaseModelEntry) -> BaseModelInfo:
    meta = row.meta or {}
    return BaseModelInfo(
        id=row.id, uuid=row.uuid, source_kind=row.source_kind, source=row.source, name=meta.get("name"),
        description=meta.get("description"), architecture=meta.get("architecture"),
        parameters=meta.get("parameters"), context_length=meta.get("context_length"),
        methods=list(meta.get("methods") or METHODS.names()), created_at=row.created_at,
    )


def list_base_models(db: Database, org_id: str) -> list[BaseModelInfo]:
    """Built-ins first (`tiny-llama` is always there), then registered models, oldest first."""
    builtins = [_builtin_info(e) for e in catalog.list_builtins()]
    known = {b.id for b in builtins}
    return builtins + [_registered_info(r) for r in store.list_base_models(db, org_id) if r.id not in known]


def get_base_model(db: Database, org_id: str, model_id: str) -> BaseModelInfo:
    entry = catalog.get_builtin(model_id)
    if entry is not None:
        return _builtin_info(entry)
    return _registered_info(store.get_base_model(db, org_id, model_id))


def builtin_uuid(model_id: str) -> str:
    return str(uuid.uuid5(BUILTIN_NAMESPACE, model_id))


def builtin_of_uuid(ref: str) -> str | None:
    """The built-in model whose UUID `ref` is, or None."""
    return next((e.id for e in catalog.list_builtins() if builtin_uuid(e.id) == ref.lower()), None)


@dataclass(frozen=True)
class BaseModelRegistration:
    source: str
    """A local folder or .gguf file under an allowed root, or a hub id (`owner/name`)."""
    kind: str = "auto"  # auto | local | gguf | hub
    name: str | None = None
    description: str | None = None


def register_base_model(
    db: Database, settings: Settings, org_id: str, request: BaseModelRegistration
) -> BaseModelInfo:
    kind = request.kind if request.kind != "auto" else _guess_kind(settings, request.source)
    if kind == "hub":
        if not HUB_ID.match(request.source):
            raise InvalidRequest([{"field": "source", "message": "not a hub id (expected owner/name)"}])
        meta: dict[str, Any] = {}
        source = request.source
    elif kind in ("local", "gguf"):
        path = allowed_model_path(settings, request.source)
        kind = "gguf" if path.is_file() else "local"
        meta, source = _describe_local(path), str(path)
    else:
        raise InvalidRequest([{"field": "kind", "message": "expected auto, local, gguf or hub"}])
    meta.update({k: v for k, v in (("name", request.name), ("description", request.description)) if v})
    row = store.register_base_model(db, org_id=org_id, source_kind=kind, source=source, meta=meta,
                                    quotas=Quotas.of(settings))
    return _registered_info(row)


def _guess_kind(settings: Settings, source: str) -> str:
    """A model found under a model root is local; otherwise a name shaped like `owner/name` is a hub id."""
    try:
        allowed_model_path(settings, source)
    except InvalidRequest:
        if HUB_ID.match(source) and not source.startswith("."):
            return "hub"
    return "local"  # registering it again below reports why it cannot be used


def allowed_model_path(settings: Settings, raw: str) -> Path:
    """The resolved path if it exists under one of the model roots; InvalidRequest otherwise."""
    def refuse(message: str) -> InvalidRequest:
        return InvalidRequest([{"field": "source", "message": message}])

    if "\x00" in raw or not raw.strip():
        raise refuse("not a path")
    roots = [r.resolve() for r in settings.model_roots]
    if not roots:
        raise refuse("registering local models is disabled: the server has no model roots configured")
    candidate = Path(raw).expanduser()
    resolved = (candidate if candidate.is_absolute() else roots[0] / candidate).resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise refuse("the path is outside the folders models may be registered from")
    if resolved.is_file() and resolved.suffix == ".gguf":
        return resolved
    if resolved.is_dir() and ((resolved / "config.json").is_file() or (resolved / "adapter_config.json").is_file()):
        return resolved
    raise refuse("no model there: expected a folder with config.json or adapter_config.json, or a .gguf file")


def _describe_local(path: Path) -> dict[str, Any]:
    """What config.json says about the model, when there is one."""
    try:
        config = json.loads((path / "config.json").read_text()) if path.is_dir() else {}
    except (OSError, ValueError):
        config = {}
    if not isinstance(config, dict):
        return {}
    meta = {"architecture": config.get("model_type"), "context_length": config.get("max_position_embeddings")}
    return {k: v for k, v in meta.items() if v is not None}

