"""Serving models for inference: activation, the one lookup from a request's `model` to what is
served, and generation through the serving process (tuneyard.serving.supervisor).

An activation is a row (store/activations.py): it outlives the API process, and the serving
process loads the model on the first request after a restart. A trained model that is not active
is activated by the first completion that names it, as OpenAI's users expect (their API has no
activation step): the same load and the same row as POST /v1/models/{id}/activate with its defaults.
A base model answers whenever asked (transformers, loaded on demand, no row). Another
organization's model is not found, whatever name reaches it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneyard.services import base_models, lookup, path_display
from tuneyard.services.errors import InvalidRequest, ModelProcessDied, ServingFailed
from tuneyard.services.path_display import PathDisplay
from tuneyard.serving.backends import BACKENDS, Event, ModelToLoad, Prompt, Sampling
from tuneyard.serving.supervisor import ServingConfig, ServingProcessGone, ServingRefused, ServingSupervisor
from tuneyard.settings import Settings
from tuneyard.store import activations as store
from tuneyard.store import catalog, uuids
from tuneyard.store import exports as export_store
from tuneyard.store.activation_tables import ModelActivation
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict, NotFound
from tuneyard.store.tables import ModelExport, TrainedModel

SERVING_LOG = "serving.log"
FT_PREFIX = "ft:"
BASE_KEY_PREFIX = "base:"
"""Base models are loaded under `base:<id>` (trained models under their id)."""
ACTIVATABLE_BACKENDS = ("transformers", "llama_cpp", "vllm")


def make_supervisor(settings: Settings) -> ServingSupervisor:
    """The supervisor of this API process's serving process (started on first use)."""
    return ServingSupervisor(ServingConfig(
        python=settings.runner_python or sys.executable, threads=settings.serving_threads,
        nice=settings.serving_nice, idle_seconds=settings.serving_idle_seconds,
        log_file=settings.data_dir / "logs" / SERVING_LOG))


@dataclass(frozen=True)
class Served:
    """What a request's `model` resolved to: the name answers carry, what the process loads, and what
    its errors show in place of the server's paths (the model's files as `name`)."""

    name: str
    model: ModelToLoad
    paths: PathDisplay

    @classmethod
    def of(cls, settings: Settings, name: str, model: ModelToLoad) -> Served:
        return cls(name, model, path_display.for_served_model(settings, model.source, name))


def verified_gguf(db: Database, org_id: str, model_id: str) -> ModelExport | None:
    """The model's newest completed GGUF export whose verification passed."""
    for row in export_store.list_exports(db, org_id, model_id):
        manifest = row.manifest or {}
        if (row.format == "gguf" and row.status == export_store.COMPLETED and manifest.get("gguf_file")
                and (manifest.get("verification") or {}).get("passed") is True):
            return row
    return None


def activate(db: Database, settings: Settings, supervisor: ServingSupervisor, org_id: str, model_id: str, *,
             backend: str | None, provider_model: str | None) -> ModelActivation:
    """Check the request whole, load the model (a model that cannot load is never marked active),
    then record the activation. The default backend is llama.cpp when the model has a verified GGUF
    export and llama-cpp-python is here, else transformers."""
    model = catalog.get_trained_model(db, org_id, model_id)
    gguf = verified_gguf(db, org_id, model_id)
    problems = []
    if backend is None:
        backend = "llama_cpp" if gguf is not None and BACKENDS.unavailable_reason("llama_cpp") is None \
            else "transformers"
    elif backend not in ACTIVATABLE_BACKENDS:
        problems.append({"field": "backend", "message": f"one of {', '.join(ACTIVATABLE_BACKENDS)}"})
    elif (reason := BACKENDS.unavailable_reason(backend)) is not None:
        problems.append({"field": "backend", "message": f"{backend} cannot serve on this host: {reason}"})
    elif backend == "llama_cpp" and gguf is None:
        problems.append({"field": "backend", "message": "llama_cpp serves a verified GGUF export and this model "
                                                        "has none: POST /v1/models/{id}/exports with format gguf"})
    if provider_model is not None:
        problems.extend(_name_problems(db, org_id, provider_model))
    if problems:
        raise InvalidRequest(problems)
    taken = _named(db, org_id, provider_model) if provider_model else None
    if taken is not None and taken.model_id != model_id:
        raise Conflict(f"model {taken.model_id} is already activated as {provider_model!r}", field="provider_model")
    export = gguf if backend == "llama_cpp" else None
    load(supervisor, Served.of(settings, model_id, _to_load(settings, model, backend, export)))
    return store.activate(db, org_id, model_id, backend=backend, export_id=export.id if export else None,
                          provider_model=provider_model)


def _named(db: Database, org_id: str, name: str) -> ModelActivation | None:
    try:
        return store.by_provider_model(db, org_id, name)
    except NotFound:
        return None


def _name_problems(db: Database, org_id: str, name: str) -> list[dict[str, str]]:
    """A provider_model name must not be taken for another kind of name a request may give."""
    if name.startswith((FT_PREFIX, "model_")):
        return [{"field": "provider_model", "message": "may not start with 'ft:' or 'model_' (trained model names)"}]
    try:
        base_models.get_base_model(db, org_id, name)
    except NotFound:
        return []
    return [{"field": "provider_model", "message": f"{name!r} is a base model's id"}]


def deactivate(db: Database, supervisor: ServingSupervisor, org_id: str, model_id: str) -> None:
    """Stop serving the model and free its memory; a model that was not active stays so."""
    catalog.get_trained_model(db, org_id, model_id)
    store.deactivate(db, org_id, model_id)
    with contextlib.suppress(ServingProcessGone, ServingRefused):  # a process that is gone holds nothing
        supervisor.unload(model_id)


def get_activation(db: Database, org_id: str, model_id: str) -> ModelActivation | None:
    catalog.get_trained_model(db, org_id, model_id)
    return store.get_activation(db, org_id, model_id)


def status(db: Database, supervisor: ServingSupervisor, org_id: str) -> dict[str, Any]:
    """The serving process's state, showing only the organization's trained models and base models:
    the process serves every organization, and one must not learn another's model ids."""
    state = supervisor.status()
    own = {m.id for m in catalog.list_trained_models(db, org_id)}
    state["models"] = [m for m in state["models"] if m["key"] in own or m["key"].startswith(BASE_KEY_PREFIX)]
    return state


def list_activations(db: Database, org_id: str) -> list[ModelActivation]:
    return store.list_activations(db, org_id)


def trained_model_id(name: str) -> str | None:
    """The trained model id a name means: the id itself, or an `ft:` name, whose last `:` part is
    the id (`ft:<base>:<suffix>:<id>`, issue 14's shape). None for a name of another kind."""
    if name.startswith(FT_PREFIX):
        return name.rsplit(":", 1)[-1] or None
    return name if name.startswith("model_") else None


def resolve_model_name(db: Database, settings: Settings, supervisor: ServingSupervisor, org_id: str,
                       name: str) -> Served:
    """What a request's `model` means for this organization: a trained model (by id or `ft:` name;
    activated on demand when it is not), an activated model's provider_model name, or a base model
    id; a UUID names the trained or base model it belongs to (what Felix and Fusion show)."""
    model_id = trained_model_id(lookup.model_reference(db, org_id, name) if uuids.is_uuid(name) else name)
    if model_id is not None:
        try:
            model = catalog.get_trained_model(db, org_id, model_id)
        except NotFound:
            raise NotFound("model", name) from None
        activation = store.get_activation(db, org_id, model.id) or _activate_on_demand(
            db, settings, supervisor, model, name)
        return Served.of(settings, name, _activated(db, settings, model, activation, name))
    try:
        activation = store.by_provider_model(db, org_id, name)
    except NotFound:
        base = base_models.get_base_model(db, org_id, lookup.model_reference(db, org_id, name))
        return Served.of(settings, name, ModelToLoad(f"{BASE_KEY_PREFIX}{base.id}", "transformers", base.source,
                                                     str(settings.resolved_model_cache_dir)))
    model = catalog.get_trained_model(db, org_id, activation.model_id)
    return Served.of(settings, name, _activated(db, settings, model, activation, name))


def _activate_on_demand(db: Database, settings: Settings, supervisor: ServingSupervisor, model: TrainedModel,
                        name: str) -> ModelActivation:
    """Activate a model a completion names, with activate's defaults; the model is loaded before
    the row is written, so one that cannot load stays inactive and the request says why."""
    try:
        return activate(db, settings, supervisor, model.org_id, model.id, backend=None, provider_model=None)
    except InvalidRequest as exc:
        reasons = "; ".join(str(p["message"]) for p in exc.problems)
        raise InvalidRequest([{"field": "model", "message": f"{name} cannot be served: {reasons}"}]) from exc
    except Conflict:
        # Two first requests at once: both loaded it (the process keeps one copy), one row won.
        row = store.get_activation(db, model.org_id, model.id)
        if row is None:
            raise
        return row


def _activated(db: Database, settings: Settings, model: TrainedModel, activation: ModelActivation,
               name: str) -> ModelToLoad:
    """What the activation serves; a Conflict naming `model` when this host can no longer serve it
    that way (the backend gone since it was activated, its GGUF file removed from disk)."""
    export = export_store.get_export(db, model.org_id, model.id, activation.export_id) \
        if activation.export_id else None
    again = f"activate it again (POST /v1/models/{model.id}/activate) with another backend"
    reason = BACKENDS.unavailable_reason(activation.backend)
    if reason is not None:
        raise Conflict(f"{name} is activated on {activation.backend}, which cannot serve on this host "
                       f"({reason}): {again}", field="model")
    loaded = _to_load(settings, model, activation.backend, export)
    if export is not None and not Path(loaded.source).is_file():
        raise Conflict(f"{name} is served by llama.cpp from its GGUF export {export.id}, whose file "
                       f"{Path(loaded.source).name} is missing: export it again, or {again}", field="model")
    return loaded


def _to_load(settings: Settings, model: TrainedModel, backend: str, export: ModelExport | None) -> ModelToLoad:
    source = str(Path(export.path) / (export.manifest or {})["gguf_file"]) if export is not None else model.path
    return ModelToLoad(model.id, backend, source, str(settings.resolved_model_cache_dir))


def load(supervisor: ServingSupervisor, served: Served) -> None:
    try:
        supervisor.load(served.model)
    except ServingRefused as exc:
        raise _refusal(exc, served.paths) from exc
    except ServingProcessGone as exc:
        raise ModelProcessDied(served.paths.text(str(exc))) from exc


def generate(supervisor: ServingSupervisor, served: Served, prompt: Prompt, sampling: Sampling) -> Iterator[Event]:
    """The generation's events, its first already produced: a refusal, or a process that died
    before answering, is raised here (422, 503), before a response has begun. Later, a process
    that dies raises ModelProcessDied from the iterator."""
    events = supervisor.generate(served.model, prompt, sampling)
    try:
        first = next(events)
    except ServingRefused as exc:
        raise _refusal(exc, served.paths) from exc
    except ServingProcessGone as exc:
        raise ModelProcessDied(served.paths.text(str(exc))) from exc
    return _rest(first, events, served.paths)


def _rest(first: Event, events: Iterator[Event], paths: PathDisplay) -> Iterator[Event]:
    yield first
    try:
        yield from events
    except ServingRefused as exc:
        raise _refusal(exc, paths) from exc
    except ServingProcessGone as exc:
        raise ModelProcessDied(paths.text(str(exc))) from exc


def _refusal(exc: ServingRefused, paths: PathDisplay) -> InvalidRequest | ServingFailed:
    """The serving process's refusal as the API's error, its message naming the model, not its files."""
    message = paths.text(str(exc))
    if exc.user:
        return InvalidRequest([{"field": exc.field or "model", "message": message}])
    return ServingFailed(message)

