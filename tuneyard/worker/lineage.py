"""A job's lineage: what lineage.json tells the runner (its model card) and the store (the trained
model's base, datasets and kind) about where the job's model comes from.

The job's spec is its request as its API received it, and a dialect keeps its vendor's body there,
whose fields need not be the engine's: no `base_model` (Fusion's `base_model_id`, Archetype's
`config.model`), no `datasets`, a `method` that is an object (OpenAI's). The type and the method are
therefore the job's own, in the engine's words (its `type` column, its resolved config, which the
runner was given); `base_model` and `datasets` are the request's only where they have the engine's
shape, so a vendor's body can neither crash the card or the store nor be recorded as an engine field.
"""

from __future__ import annotations

from typing import Any

from tuneyard.store.tables import Job


def job_lineage(job: Job) -> dict[str, Any]:
    """Where the job's model comes from, as the user asked for it (ids and names, not paths)."""
    spec = job.spec if isinstance(job.spec, dict) else {}
    config = job.config if isinstance(job.config, dict) else {}
    method = config.get("method")
    return {"job_id": job.id, "job_name": job.name, "project_id": job.project_id,
            "base_model": _base_model(spec, config), "method": method if isinstance(method, str) else "lora",
            "type": job.type, "datasets": _datasets(spec)}


def _base_model(spec: dict[str, Any], config: dict[str, Any]) -> str | None:
    """The base as the request named it; else the config's where it is a name (a built-in or hub id)
    rather than a folder on this server's disk, which is no name a user could use elsewhere."""
    asked = spec.get("base_model")
    if isinstance(asked, str) and asked:
        return asked
    resolved = config.get("base_model")
    return resolved if isinstance(resolved, str) and resolved and not resolved.startswith("/") else None


def _datasets(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's dataset refs that are refs ({id} or {name}, maybe a split)."""
    given = spec.get("datasets")
    if not isinstance(given, list):
        return []
    return [ref for ref in given if isinstance(ref, dict) and any(isinstance(ref.get(k), str) for k in ("id", "name"))]
