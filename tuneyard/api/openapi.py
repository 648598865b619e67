"""The OpenAPI document, made true to what the service answers.

FastAPI builds it from the routes; what it cannot know is settled here, once for every route:

- Errors are JSON whatever the route's own media type: FastAPI documents a route's extra responses
  in its response class's type, so /metrics (text), /stream (SSE) and the file downloads claimed
  their error envelopes were text, event streams or octet streams.
- A bad request's answer is the one each route declares: FastAPI's own 422 is dropped where a
  route declares 400 instead (`_drop_fastapis_422`).
- Event streams: /stream documents each SSE item (`itemSchema`), not "a string".
- Links: an operation that creates something (201 with an `id`) links to every operation on the
  path below it that takes that id, so a client (and a fuzzer's stateful phase) can follow a job,
  a dataset, a file, a key or a base model from the answer that made it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from tuneyard.api.schemas.bodies import model_body_schema, trajectory_body_schema
from tuneyard.api.schemas.job_create import job_create_schema
from tuneyard.services.auto_training import AutoTrainingConfigIn

JSON = "application/json"
METHODS = ("get", "put", "post", "delete", "patch")
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def install_openapi(app: FastAPI) -> None:
    """Serve `document(app)` at /openapi.json (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, openapi_version=app.openapi_version,
                         description=app.description, routes=app.routes)
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    for operations in paths.values():
        for method in METHODS:
            if method in operations:
                _drop_fastapis_422(operations[method])
                _errors_as_json(operations[method])
                _streams_by_item(operations[method])
    _link_creations(paths)
    _documented_bodies(schema)
    return schema


FASTAPI_422 = "Validation Error"


def _drop_fastapis_422(operation: dict[str, Any]) -> None:
    """FastAPI documents a 422 of its own on a route with parameters that declared none. A route that
    declares 400 as its answer to a bad request (a dialect whose documents say so, as Fusion's)
    never gives that 422."""
    responses = operation.get("responses", {})
    if "400" in responses and responses.get("422", {}).get("description") == FASTAPI_422:
        del responses["422"]


BodySchema = Callable[[str], tuple[dict[str, Any], dict[str, Any]]]
"""(ref template) → (a request body's schema, the component schemas it refers to)."""

# Routes that read their body as a mapping, to report every problem at once in the body's own
# words: FastAPI sees a free-form object, so the document gives what the service really checks.
DOCUMENTED_BODIES: dict[tuple[str, str], BodySchema] = {
    ("/v1/jobs", "post"): job_create_schema,
    ("/v1/trajectories", "post"): trajectory_body_schema,
    ("/v1/auto-training", "put"): lambda ref: model_body_schema(AutoTrainingConfigIn, ref),
}


def _documented_bodies(schema: dict[str, Any]) -> None:
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    for (path, method), make in DOCUMENTED_BODIES.items():
        operation = schema.get("paths", {}).get(path, {}).get(method)
        if operation is None:
            continue
        body, definitions = make("#/components/schemas/{model}")
        clashes = [name for name in definitions if name in schemas and schemas[name] != definitions[name]]
        if clashes:
            raise RuntimeError(f"{method.upper()} {path}: body schemas clash: {', '.join(sorted(clashes))}")
        schemas.update(definitions)
        operation["requestBody"]["content"][JSON]["schema"] = body


def _errors_as_json(operation: dict[str, Any]) -> None:
    for status, response in operation.get("responses", {}).items():
        content = response.get("content")
        if not status.isdigit() or int(status) < 400 or not content:
            continue
        # Every media type FastAPI filled in holds the same envelope schema: keep one, as JSON.
        response["content"] = {JSON: content.get(JSON) or next(iter(content.values()))}


def _streams_by_item(operation: dict[str, Any]) -> None:
    # A route that documents its SSE items keeps no `schema` beside them: FastAPI's "a string" for a
    # streaming response class would read as the schema of the whole stream.
    for response in operation.get("responses", {}).values():
        for media in response.get("content", {}).values():
            if "itemSchema" in media:
                media.pop("schema", None)


def _link_creations(paths: dict[str, dict[str, Any]]) -> None:
    for collection, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links = {}
        for path, targets in paths.items():
            param = _first_param_below(collection, path)
            if param is None:
                continue
            for method in METHODS:
                target = targets.get(method)
                if target is not None and "operationId" in target:
                    links[target["operationId"]] = {"operationId": target["operationId"],
                                                    "parameters": {param: "$response.body#/id"}}
        if links:
            created["links"] = links


def _first_param_below(collection: str, path: str) -> str | None:
    """The id parameter of `path` when it is `collection/{id}` or below it, e.g. /v1/jobs/{job_id}/logs."""
    if not path.startswith(collection + "/"):
        return None
    first = path[len(collection) + 1:].split("/", 1)[0]
    found = _PARAM.match(first)
    return found.group(1) if found else None
