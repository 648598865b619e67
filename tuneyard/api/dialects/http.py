"""What every dialect's routes share on the wire: the body read as JSON, its errors, its dates, its lists.

- `read_json` reads a body as JSON whatever its Content-Type says: 002's printed curl lines send
  curl's default form content type, and must work as printed. A route that takes a body reads it
  with `parse(request, Model)`, which checks the whole body against a pydantic model and refuses it
  with every problem at once (InvalidRequest, fields named in the dialect's words).
- `render_envelope_400` is the error renderer of documents that call a bad body 400: the native
  envelope `{"error": {code, message, details}}` with the native codes (UNAUTHORIZED 401,
  NOT_FOUND 404, ...), and 400 INVALID_REQUEST where the native API answers 422.
- `iso_z` (ISO 8601 in UTC with `Z`, microseconds as Archetype prints them) and `epoch_ms` (003).
- `listing`: a list answer whose shape a document does not give, `{"<resource>": [...]}`; callers
  pass items newest first, as every service lists them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from tuneyard.api.dialects.translate import renamed
from tuneyard.api.errors import INVALID_REQUEST, ApiError, envelope
from tuneyard.api.schemas.common import ERROR_RESPONSES
from tuneyard.services.errors import InvalidRequest

M = TypeVar("M", bound=BaseModel)

BODY = "(body)"
"""The field a problem with the body as a whole names."""


async def read_json(request: Request, *, empty: Any = None) -> Any:
    """The request's body parsed as JSON, whatever its Content-Type; `empty` for no body at all.
    A body that is not JSON is InvalidRequest naming the body."""
    raw = await request.body()
    if not raw.strip():
        return empty
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest([{"field": BODY, "message": f"the body is not valid JSON: {exc}"}],
                             "the body is not valid JSON") from None


def validate(model: type[M], data: Any, names: Mapping[str, str] | None = None) -> M:
    """`data` as `model`, or InvalidRequest with every problem, each field renamed by `names`
    (`translate.renamed`) so the dialect's client reads its own words."""
    if data is None:
        data = {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(error) for error in exc.errors()]
        error = InvalidRequest(problems)
        raise (renamed(error, names) if names else error) from None


async def parse(request: Request, model: type[M], names: Mapping[str, str] | None = None) -> M:
    """The request's JSON body (any Content-Type; none is `{}`) checked whole against `model`."""
    return validate(model, await read_json(request, empty={}), names)


def _problem(error: Any) -> dict[str, str]:
    field = ".".join(str(part) for part in error.get("loc", ())) or BODY
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        message = "unknown field"
    elif error.get("type") == "missing":
        message = "required"
    return {"field": field, "message": message}


def render_envelope_400(_request: Request, error: ApiError) -> Response:
    """The native envelope, with a bad request (the native API's 422) answered 400 INVALID_REQUEST."""
    status = 400 if error.status == 422 else error.status
    code = INVALID_REQUEST if error.status == 422 else error.code
    return envelope(status, code, error.message, error.details, error.headers)


def iso_z(when: datetime | None) -> str | None:
    """ISO 8601 in UTC ending in `Z`, with microseconds: 2026-04-27T14:32:18.421000Z."""
    if when is None:
        return None
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def epoch_ms(when: datetime | None) -> int | None:
    """Milliseconds since the Unix epoch (document 003's dates)."""
    return None if when is None else int(when.timestamp() * 1000)


def listing(resource: str, items: Iterable[Any]) -> dict[str, list[Any]]:
    """`{"<resource>": [...]}`, the items as given (newest first, as the services list them)."""
    return {resource: list(items)}


RESPONSES: dict[int | str, dict[str, Any]] = {code: shape for code, shape in ERROR_RESPONSES.items() if code != 422}
"""The errors any route of a 400 dialect documents: the native ones, less the 422 it answers 400."""
BAD_REQUEST: dict[int | str, dict[str, Any]] = {400: {**ERROR_RESPONSES[422], "description": (
    "INVALID_REQUEST: the body is not JSON, or the body, query or a bounded path parameter does not validate; "
    "`details.problems` names every field at fault")}}
"""Documented by a 400 dialect's route that takes a body, a query or a bounded path parameter."""


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI requestBody for a route that reads its body with `parse`: the model's JSON schema,
    its $defs inlined (the document has no place for a schema's own $defs)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})
    return {"content": {"application/json": {"schema": _inlined(schema, defs)}}, "required": True}


def _inlined(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inlined(v, defs) for v in node]
    return node
