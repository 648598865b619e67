"""Job templates: the built-in ones and an organization's own, and a submission that names one.

A template is a partial job spec; a request naming it (`"template": "lora-chat"`) gets the
template's fields under its own (`planning.templates.merged`). A name that is no template of the
organization, or one whose job type cannot run here, is a problem on `template`, reported with
the request's others.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneyard.planning.templates import BUILTIN_TEMPLATES, Template, merged
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.submission import JobRequest, Problems
from tuneyard.spec import check_spec
from tuneyard.spec.text import Description, Name
from tuneyard.store import templates as store
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound

TEMPLATE_FIELD = "template"
SPEC_KEYS = frozenset({"type", "base_model", "datasets", "method", "hyperparams"})
"""What a template may hold: the engine's spec fields, never the service's (name, project, key)."""


class TemplateBody(BaseModel):
    """A custom template: its name, what it is for, and the partial job spec it holds."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="What submissions give as `template`; not a built-in's name.")
    description: Description = Field("", description="What the template is for.")
    spec: dict[str, Any] = Field(description="A partial job spec: any of type, base_model, datasets, "
                                             "method, hyperparams.")


def list_templates(db: Database, org_id: str) -> list[dict[str, Any]]:
    """Built-ins first, then the organization's own by name."""
    own = [_custom(row) for row in store.list_templates(db, org_id)]
    return [t.to_json() for t in (*BUILTIN_TEMPLATES.values(), *own)]


def get_template(db: Database, org_id: str, name: str) -> dict[str, Any]:
    template = find(db, org_id, name)
    if template is None:
        raise NotFound("template", name)
    return template.to_json()


def save_template(db: Database, org_id: str, body: TemplateBody, *, replace: bool = False) -> dict[str, Any]:
    problems = _spec_problems(body.spec)
    if body.name in BUILTIN_TEMPLATES:
        problems.append({"field": "name", "message": f"{body.name!r} is a built-in template's name"})
    if problems:
        raise InvalidRequest(problems)
    return _custom(store.save_template(db, org_id, body.name, body.description, body.spec, replace=replace)).to_json()


def delete_template(db: Database, org_id: str, name: str) -> None:
    store.delete_template(db, org_id, name)


def find(db: Database, org_id: str, name: str) -> Template | None:
    builtin = BUILTIN_TEMPLATES.get(name)
    if builtin is not None:
        return builtin
    row = store.find_template(db, org_id, name)
    return None if row is None else _custom(row)


def with_template(db: Database, org_id: str, request: JobRequest) -> JobRequest:
    """The request with the template it names merged under its spec; unchanged when it names none."""
    if TEMPLATE_FIELD not in request.spec:
        return request
    spec = {k: v for k, v in request.spec.items() if k != TEMPLATE_FIELD}
    name = request.spec[TEMPLATE_FIELD]
    template = find(db, org_id, name) if isinstance(name, str) else None
    problem = None
    if template is None:
        known = ", ".join([*BUILTIN_TEMPLATES, *(r.name for r in store.list_templates(db, org_id))])
        problem = f"no template {name!r}; the templates are {known}"
    elif template.unavailable() is not None:
        problem = f"template {name!r} cannot be used: {template.unavailable()}"
    if problem is not None:
        return dataclasses.replace(request, spec=spec,
                                   problems=(*request.problems, {"field": TEMPLATE_FIELD, "message": problem}))
    assert template is not None
    return dataclasses.replace(request, spec=merged(template.spec, spec))


def _custom(row: Any) -> Template:
    return Template(row.name, row.description, dict(row.spec), builtin=False)


def _spec_problems(spec: dict[str, Any]) -> Problems:
    problems: Problems = [{"field": f"spec.{key}", "message": "not a job spec field a template may hold"}
                          for key in spec if key not in SPEC_KEYS]
    if problems:
        return problems
    # With a placeholder base model where the template leaves it to the request, it must parse.
    # and its datasets, which most templates leave to each request
    _, found = check_spec({"base_model": "tiny-llama", **spec})
    left_to_request = {"datasets"} - set(spec)
    return [{**p, "field": f"spec.{p['field']}"} for p in found if p["field"] not in left_to_request]
