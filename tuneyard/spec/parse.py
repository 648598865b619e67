"""Validating a spec as the union of the registered job types, and resolving its hyperparameters.

`JobSpec` is the union of each job type's spec model, discriminated by `type` (default
"finetune"); a type that takes a method is itself the union of one model per method,
discriminated by `method` (default "lora"), so `hyperparams` is checked against exactly the
fields that method has. Both unions are built from the registries when first used.
"""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model

from tuneyard.errors import SpecError
from tuneyard.spec.hyperparams import Hyperparams
from tuneyard.spec.job import (
    ORIGIN_BASE_MODEL,
    ORIGIN_DEFAULT,
    ORIGIN_METHOD,
    ORIGIN_USER,
    JobSpecBase,
    TrainingJobSpec,
    problems_from,
)
from tuneyard.spec.jobtypes import JOB_TYPES, JobTypeEntry
from tuneyard.spec.methods import METHODS, methods_with

DEFAULT_TYPE = "finetune"
DEFAULT_METHOD = "lora"


def _tag(field: str, default: str) -> Any:
    def read(value: Any) -> Any:
        return value.get(field, default) if isinstance(value, dict) else getattr(value, field, None)

    return read


def _choice(field: str, names: tuple[str, ...], default: str) -> Discriminator:
    return Discriminator(_tag(field, default), custom_error_type=f"invalid_{field}",
                         custom_error_message=f"expected one of {', '.join(names)}")


def _variants(entry: JobTypeEntry) -> Any:
    """The type's spec model, or for a type with a method, one model per method."""
    if not issubclass(entry.spec, TrainingJobSpec):
        return entry.spec
    members = []
    for method in METHODS:
        tag: Any = Literal[method.name]
        model = create_model(
            f"{entry.spec.__name__}[{method.name}]", __base__=entry.spec,
            method=(tag, method.name),
            hyperparams=(method.hyperparams, Field(default_factory=method.hyperparams)),
        )
        members.append(Annotated[model, Tag(method.name)])
    return Annotated[Union[tuple(members)], _choice("method", METHODS.names(), DEFAULT_METHOD)]  # noqa: UP007


@functools.cache
def _adapter(types: tuple[str, ...], methods: tuple[str, ...]) -> TypeAdapter[Any]:
    members = [Annotated[_variants(JOB_TYPES.get(name)), Tag(name)] for name in types]
    union: Any = Annotated[Union[tuple(members)], _choice("type", types, DEFAULT_TYPE)]  # noqa: UP007
    return TypeAdapter(union)


def job_spec_adapter() -> TypeAdapter[Any]:
    """`JobSpec`: the union of the registered job types' spec models, as they are registered now."""
    return _adapter(JOB_TYPES.names(), METHODS.names())


def spec_problems(error: ValidationError) -> list[dict[str, Any]]:
    """problems_from, with the union tags (type, then method) taken out of each field path."""
    out = []
    for problem, item in zip(problems_from(error), error.errors(), strict=True):
        loc = list(item["loc"])
        if item["type"] in ("invalid_type", "invalid_method"):
            out.append({"field": item["type"].removeprefix("invalid_"), "message": problem["message"]})
            continue
        if loc and loc[0] in JOB_TYPES:
            loc.pop(0)
            if loc and loc[0] in METHODS:
                loc.pop(0)
        message = problem["message"]
        if item["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] == "hyperparams":
            owners = methods_with(str(loc[1]))
            message = f"not a parameter of this method; {', '.join(owners)} take it" if owners else message
        out.append({"field": ".".join(str(p) for p in loc) or "(body)", "message": message})
    return out


def check_spec(data: dict[str, Any]) -> tuple[JobSpecBase | None, list[dict[str, Any]]]:
    """The spec and [], or None and every problem found."""
    try:
        spec: JobSpecBase = job_spec_adapter().validate_python(data)
    except ValidationError as exc:
        return None, spec_problems(exc) + _beyond_unknown_tags(data, exc)
    if JOB_TYPES.get(spec.type).needs_data and not any(d.split == "train" for d in spec.datasets):
        return None, [{"field": "datasets", "message": f"a {spec.type} job needs at least one training dataset"}]
    problems = spec.problems()
    return (None, problems) if problems else (spec, [])


def _beyond_unknown_tags(data: dict[str, Any], error: ValidationError) -> list[dict[str, Any]]:
    """With an unknown type or method nothing else gets checked; check the rest under the default
    one too, so every problem is reported at once (less fields the unknown one might have taken)."""
    unknown = {item["type"].removeprefix("invalid_") for item in error.errors()} & {"type", "method"}
    if not unknown:
        return []
    defaults = {"type": DEFAULT_TYPE, "method": DEFAULT_METHOD}
    try:
        job_spec_adapter().validate_python({**data, **{field: defaults[field] for field in unknown}})
    except ValidationError as again:
        return [p for p in spec_problems(again) if p["message"] != "unknown field"
                and not p["message"].startswith("not a parameter of this method")]
    return []


def parse_spec(data: Any) -> JobSpecBase:
    """Validate a whole user spec at once; raise SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError([{"field": "(body)", "message": "the spec must be a mapping"}])
    spec, problems = check_spec(data)
    if spec is None:
        raise SpecError(problems)
    return spec


def resolve_hyperparams(
    spec: TrainingJobSpec, base_model_defaults: dict[str, Any] | None = None
) -> tuple[Hyperparams, dict[str, str]]:
    """Fill in hyperparameters the user left out; return them with each value's origin.

    Precedence: user > base model default (for this method) > method default > schema default.
    """
    model = type(spec.hyperparams)
    user_given = spec.hyperparams.model_fields_set
    layers = [  # later layers win
        (ORIGIN_METHOD, METHODS.get(spec.method).defaults),
        (ORIGIN_BASE_MODEL, base_model_defaults or {}),
    ]
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in model.model_fields:
        values[name] = getattr(spec.hyperparams, name)
        origins[name] = ORIGIN_DEFAULT
        if name in user_given:
            origins[name] = ORIGIN_USER
            continue
        for origin, layer in layers:
            if name in layer:
                values[name] = layer[name]
                origins[name] = origin
    try:
        return model.model_validate(values), origins
    except ValidationError as exc:
        raise SpecError(problems_from(exc), "the base model's defaults are invalid") from None
