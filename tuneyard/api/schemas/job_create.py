"""POST /v1/jobs's body as the services' JobRequest.

The native body is the engine's spec with the service's own fields (name, project_id,
idempotency_key) beside it, so the services' field names are its own: a problem they report names
the field as the body wrote it. Problems with the service fields and the Idempotency-Key header are
found here and travel with the request, to be reported with the rest in one 422.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from tuneyard.services.errors import InvalidRequest
from tuneyard.services.submission import SERVICE_FIELDS, JobRequest, Problems, ServiceFields
from tuneyard.services.templates import TEMPLATE_FIELD
from tuneyard.spec import problems_from
from tuneyard.spec.parse import job_spec_adapter
from tuneyard.spec.text import KEY_MAX, Name, text_problem

KEY_FIELD = "idempotency_key"


def job_request(body: Any, header_key: str | None = None) -> JobRequest:
    """The request a native body makes; InvalidRequest at once when it is not even an object."""
    if not isinstance(body, dict):
        raise InvalidRequest([{"field": "(body)", "message": "the body must be a JSON object"}])
    problems: Problems = []
    fields = _service_fields({k: v for k, v in body.items() if k in SERVICE_FIELDS}, problems)
    key = _idempotency_key(body.get(KEY_FIELD), fields.idempotency_key, header_key, problems)
    return JobRequest(
        spec={k: v for k, v in body.items() if k not in SERVICE_FIELDS},
        name=fields.name, project_id=fields.project_id, idempotency_key=key, problems=tuple(problems),
        submitted={k: v for k, v in body.items() if k != KEY_FIELD},
    )


def _service_fields(given: dict[str, Any], problems: Problems) -> ServiceFields:
    """The fields that check out; each that does not is a problem, and left out."""
    try:
        return ServiceFields.model_validate(given)
    except ValidationError as exc:
        problems.extend(problems_from(exc))
        bad = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        return ServiceFields.model_validate({k: v for k, v in given.items() if k not in bad})


def _idempotency_key(in_body: Any, checked: str | None, header_key: str | None, problems: Problems) -> str | None:
    """The body's key, else the header's; both given must agree."""
    if header_key is not None and in_body is not None and header_key != in_body:
        problems.append({"field": KEY_FIELD,
                         "message": "differs from the Idempotency-Key header; send one or make them equal"})
    header_problem = None if header_key is None else text_problem(header_key, max_length=KEY_MAX)
    if header_problem:
        problems.append({"field": "Idempotency-Key", "message": header_problem})
        header_key = None
    key = checked if isinstance(in_body, str) else header_key
    return key or None


def job_create_schema(ref_template: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body's JSON schema and the definitions it refers to, from the registered job types.

    Each job type (and, for a type with a method, each method) is one object schema with its
    own fields and the service fields beside them. `anyOf`, not pydantic's `oneOf`: `type` and
    `method` have defaults, so a body that gives neither fits several members, as the service
    takes it (finetune, lora); which one it is the service decides, by those two fields.
    """
    generated = job_spec_adapter().json_schema(ref_template=ref_template)
    definitions: dict[str, Any] = generated.pop("$defs", {})
    service = ServiceFields.model_json_schema(ref_template=ref_template)
    service_properties = service.get("properties", {})
    definitions.update(service.get("$defs", {}))
    members = []
    for ref in _member_refs(generated):
        name = ref.rsplit("/", 1)[-1]
        member = definitions[name]
        member["properties"] = {**member.get("properties", {}), **service_properties}
        members.append({"$ref": ref})
    definitions[FROM_TEMPLATE] = _from_template_schema()
    members.append({"$ref": ref_template.format(model=FROM_TEMPLATE)})
    return {"anyOf": members, "description": JOB_BODY_DESCRIPTION}, definitions


FROM_TEMPLATE = "JobCreateFromTemplate"


def _from_template_schema() -> dict[str, Any]:
    # What a template leaves out the body gives, and the body's fields override the template's, so
    # only the merged spec can be checked against a job type's schema: by the service (422).
    return {
        "title": FROM_TEMPLATE, "type": "object", "required": [TEMPLATE_FIELD], "additionalProperties": True,
        "properties": {TEMPLATE_FIELD: {**TypeAdapter(Name).json_schema(),
                                        "description": "A template's name (GET /v1/templates): its partial spec "
                                                       "with this body's fields over it."}},
        "description": "A job from a template: any of the job fields beside `template`, checked once merged.",
    }


JOB_BODY_DESCRIPTION = ("The engine's spec (`type`, `base_model`, `datasets: [{id} | {name}]`, `method`, "
                        "`hyperparams`, or a job type's own fields) plus `name`, `project_id` and "
                        "`idempotency_key`; or a `template` with any of those over it. Rules across fields and "
                        "what must exist (the dataset, the base model, a LoRA target module in the model) are "
                        "checked by the service: 422.")


def _member_refs(schema: dict[str, Any]) -> list[str]:
    """The $ref of every object schema in a (nested) union, in order."""
    if "$ref" in schema:
        return [schema["$ref"]]
    found = []
    for key in ("oneOf", "anyOf"):
        for item in schema.get(key, []):
            found.extend(_member_refs(item))
    return found
