"""Turn a job request into a runner-ready config, checking everything before anything is queued.

Every problem is collected (spec fields, the base model, each dataset, the project, the
idempotency key) and reported together in one InvalidRequest, so a user fixes a request in one
round trip instead of discovering its faults one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tuneyard.errors import PlatformError, SpecError
from tuneyard.planning.memory import Device
from tuneyard.services.contract_calibration import contract_calibration
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.model_inputs import (
    Problem,
    Problems,
    ResolvedModel,
    check_growable,
    check_target_modules,
    evaluate_input,
    merge_input,
    resolve_base_model,
)
from tuneyard.settings import Settings
from tuneyard.spec import (
    JOB_TYPES,
    METHODS,
    JobSpecBase,
    TrainingJobSpec,
    check_spec,
    parse_spec,
    problems_from,
    resolve_hyperparams,
)
from tuneyard.spec.distributed import Distributed
from tuneyard.spec.text import Ident, Key, Name
from tuneyard.store import datasets as datasets_store
from tuneyard.store import tenancy
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.jobs import request_hash
from tuneyard.training.contract import SPEC_DEVICE_FIELD
from tuneyard.training.models import catalog

__all__ = ["SERVICE_FIELDS", "JobPlan", "JobRequest", "Problem", "Problems", "ServiceFields", "default_hyperparams",
           "plan_job"]



class ServiceFields(BaseModel):
    """The service's own fields of a job, beside the engine's spec, with their limits."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(None, description="A label for people.")
    project_id: Ident | None = Field(None, description="The project the job belongs to.")
    idempotency_key: Key | None = Field(None, description="Retries with the same key return the same job.")


SERVICE_FIELDS = frozenset(ServiceFields.model_fields)


@dataclass(frozen=True)
class JobRequest:
    """A job to submit, in the services' words: each API builds one from its own schema.

    `spec` is the engine's spec (type, base_model, datasets, method, hyperparams) as a mapping;
    the service checks it whole, with everything else, so a request's problems are reported
    together, each naming a field of this request. `problems` are those the API already found in
    its own schema (named in its own words); they are reported with the service's.
    """

    spec: Mapping[str, Any]
    name: str | None = None
    project_id: str | None = None
    idempotency_key: str | None = None
    problems: tuple[Problem, ...] = ()
    submitted: Mapping[str, Any] | None = None
    """The request as its API received it, stored as the job's `spec` and hashed for idempotency;
    when None, the spec with the name and project."""
    dialect: str = "native"
    """The API it came through; `labels` are kept under this name."""
    labels: Mapping[str, Any] = field(default_factory=dict)
    """The dialect's own fields of the job, kept beside it (tuneyard.store.labels)."""
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    """What the job may be given but nothing may store (a vendor's API key), by field name: a job
    that would store one anywhere (its spec, config, labels or name) is refused."""
    device: Device | None = None
    """The device the job must train on, where the API's request names one (003's `backend`): only a
    worker of that device claims it, and its runner trains on it or fails. None: the best one any
    worker has. Not a field of the engine's spec: the native body has no such field."""

    def stored_spec(self) -> dict[str, Any]:
        if self.submitted is not None:
            return dict(self.submitted)
        named = {"name": self.name, "project_id": self.project_id}
        return {**self.spec, **{k: v for k, v in named.items() if v is not None}}


@dataclass(frozen=True)
class JobPlan:
    """A checked request: what to store and what the runner will get."""

    request: JobRequest
    type: str
    spec: dict[str, Any]  # as submitted, without the idempotency key
    config: dict[str, Any]  # the resolved, runner-valid spec
    labels: dict[str, dict[str, Any]]  # by dialect
    idempotency_key: str | None
    body_hash: str
    dataset_ids: list[str]


def plan_job(db: Database, settings: Settings, org_id: str, request: JobRequest) -> JobPlan:
    """Check the whole request; raise InvalidRequest listing every problem, or return the plan."""
    problems: Problems = []
    spec = _check_spec(request.spec, problems)
    problems.extend(_executor_problems(request.spec, settings))
    problems.extend(request.problems)
    _check_fields(request, problems)
    # A value refused above is not looked up: it may be one the store cannot even take (a NUL byte).
    model = None if _refused("base_model", problems) else _check_base_model(db, settings, org_id, request.spec,
                                                                            problems)
    # What a job type resolves beyond its base model (a merge's adapter base, an evaluation's model to
    # compare with and judge, a contraction's calibration text): added to the runner's config as is.
    type_inputs: dict[str, Any] = {}
    if spec is not None and model is not None:
        check_target_modules(spec, model, problems)
        type_inputs = merge_input(db, settings, org_id, spec, model, request.spec, problems)
        type_inputs.update(evaluate_input(db, settings, org_id, spec, problems))
        check_growable(spec, model, problems)
    type_inputs.update(contract_calibration(
        db, org_id, spec, request.spec, lambda ref, at: _one_dataset(db, org_id, ref, at, problems), problems))
    datasets = _check_datasets(db, org_id, request.spec.get("datasets"), problems)
    _check_project(db, org_id, request.project_id, problems)
    if problems or spec is None or model is None:
        raise InvalidRequest(problems or [{"field": "(body)", "message": "invalid job"}], _message(problems))
    config = {**_resolve_config(spec, model, datasets), **type_inputs}
    if request.device is not None:  # the runner's spec.json carries it, so the runner trains there too
        config[SPEC_DEVICE_FIELD] = request.device
    stored = request.stored_spec()
    labels = {request.dialect: dict(request.labels)} if request.labels else {}
    _refuse_stored_secrets(request, [stored, config, labels, request.name, request.project_id])
    # A retry with other labels is another request; one without any hashes as before labels existed.
    digest = request_hash({"spec": stored, "labels": labels} if labels else stored)
    return JobPlan(request, spec.type, stored, config, labels, request.idempotency_key, digest,
                   [d for d, _ in datasets])


def _refuse_stored_secrets(request: JobRequest, stored: list[Any]) -> None:
    """A secret reaches nothing stored; finding one there is the API's bug, refused before any write."""
    text = json.dumps(stored, ensure_ascii=False, default=str)
    leaked = sorted(name for name, value in request.secrets.items()
                    if value and (value in text or json.dumps(value, ensure_ascii=False)[1:-1] in text))
    if leaked:
        raise PlatformError(f"the {request.dialect} request would have stored its secret {', '.join(leaked)}; "
                            "refused", dialect=request.dialect, fields=leaked)


def _message(problems: Problems) -> str:
    shown = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return f"the job request has {len(problems)} problem(s): {shown}{more}"


def _refused(field: str, problems: Problems) -> bool:
    """Whether a problem was already found with `field` or a field inside it."""
    return any(p["field"] == field or str(p["field"]).startswith(f"{field}.") for p in problems)


def _check_spec(data: Mapping[str, Any], problems: Problems) -> JobSpecBase | None:
    spec, spec_problems = check_spec(dict(data))
    problems.extend(spec_problems)
    if spec is not None:
        _check_runnable(spec, problems)
    return spec


def _check_fields(request: JobRequest, problems: Problems) -> None:
    """The service fields' limits, for an API that did not check them against ServiceFields itself."""
    given = {"name": request.name, "project_id": request.project_id, "idempotency_key": request.idempotency_key}
    try:
        ServiceFields.model_validate(given)
    except ValidationError as exc:
        problems.extend(problems_from(exc))


def _executor_problems(data: Mapping[str, Any], settings: Settings) -> Problems:
    """What this server's executor cannot launch of the spec's `distributed`; read from the request itself,
    so it is reported with the spec's own problems (the spec may have others in the same field)."""
    try:
        asked = Distributed.model_validate(data.get("distributed") or {})
    except ValidationError:
        return []  # the spec's check names what is wrong with it
    return asked.executor_problems(settings.executor)


def _check_runnable(spec: JobSpecBase, problems: Problems) -> None:
    """Refuse here what no runner could do, rather than queue it to fail (and be retried) there."""
    if not JOB_TYPES.get(spec.type).runnable:
        runnable = ", ".join(t.name for t in JOB_TYPES if t.runnable)
        problems.append({"field": "type", "message": f"{spec.type} jobs cannot run yet; this server runs {runnable}"})
    if isinstance(spec, TrainingJobSpec):
        missing = METHODS.get(spec.method).unavailable()
        if missing:
            problems.append({"field": "method", "message": (
                f"method {spec.method!r} is not available on this server: {'; '.join(missing)}")})


def _check_base_model(
    db: Database, settings: Settings, org_id: str, spec: Mapping[str, Any], problems: Problems
) -> ResolvedModel | None:
    name = spec.get("base_model")
    if not isinstance(name, str) or not name:
        return None  # the field validation has reported it
    try:
        model = resolve_base_model(db, settings, org_id, name)
    except NotFound:
        problems.append({"field": "base_model", "message": (
            f"no base model {name!r}: give a built-in or registered base model id, "
            "or a checkpoint or trained-model id of your organization")})
        return None
    method = spec.get("method", "lora")
    if model.methods is not None and isinstance(method, str) and method not in model.methods:
        problems.append({"field": "method", "message": (
            f"{name} supports {', '.join(model.methods)}, not {method}")})
    return model


def _check_datasets(db: Database, org_id: str, refs: Any, problems: Problems) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each ref's dataset id and runner refs (one per file), for the refs that check out."""
    if not isinstance(refs, list):
        return []
    found = []
    for i, ref in enumerate(refs):
        if not isinstance(ref, dict) or _refused(f"datasets.{i}", problems):
            continue  # the field validation has reported it
        if ref.get("path") is not None:
            problems.append({"field": f"datasets.{i}.path",
                             "message": "the API takes datasets by id or name; upload files first"})
            continue
        resolved = _one_dataset(db, org_id, ref, f"datasets.{i}", problems)
        if resolved is not None:
            found.append(resolved)
    return found


def _one_dataset(
    db: Database, org_id: str, ref: dict[str, Any], field: str, problems: Problems
) -> tuple[str, list[dict[str, Any]]] | None:
    ds_id, ds_name = ref.get("id"), ref.get("name")
    try:
        if isinstance(ds_id, str):
            dataset = datasets_store.get_dataset(db, org_id, ds_id)
        elif isinstance(ds_name, str):
            dataset = datasets_store.get_dataset_by_name(db, org_id, ds_name)
        else:
            return None
    except NotFound:
        problems.append({"field": field, "message": f"no dataset {ds_id or ds_name!r}"})
        return None
    if dataset.status != "ready":
        problems.append({"field": field, "message": f"dataset {dataset.id} is {dataset.status}, not ready"})
        return None
    fmt = ref.get("format") or "auto"
    fmt = dataset.format if fmt == "auto" else fmt
    split = ref.get("split", "train")
    paths = [datasets_store.get_file(db, org_id, f).path for f in dataset.file_ids]
    return dataset.id, [{"path": p, "format": fmt, "split": split} for p in paths]


def _check_project(db: Database, org_id: str, project_id: str | None, problems: Problems) -> None:
    if project_id is None or _refused("project_id", problems):
        return
    try:
        tenancy.get_project(db, org_id, project_id)
    except NotFound:
        problems.append({"field": "project_id", "message": f"no project {project_id}"})


def _resolve_config(
    spec: JobSpecBase, model: ResolvedModel, datasets: list[tuple[str, list[dict[str, Any]]]]
) -> dict[str, Any]:
    if not isinstance(spec, TrainingJobSpec):  # a type without a method: its own parameters, no hyperparams
        config = {**spec.model_dump(exclude={"base_model", "datasets", "wandb_project"}), **spec.reporting(),
                  "base_model": model.runner_source,
                  "datasets": [ref for _, refs in datasets for ref in refs]}
        parse_spec(config)
        return config
    try:
        hyperparams, origins = resolve_hyperparams(spec, _defaults_for(model, spec.method))
    except SpecError as exc:
        raise InvalidRequest(exc.problems, exc.message) from None
    config = {
        "type": spec.type,
        "base_model": model.runner_source,
        "method": spec.method,
        "datasets": [ref for _, refs in datasets for ref in refs],
        "hyperparams": hyperparams.model_dump(),
        **spec.reporting(),
    }
    if spec.distributed is not None:  # the worker launches the ranks it asks for (worker/command.py)
        config["distributed"] = spec.distributed.model_dump()
    parse_spec(config)  # the runner will parse it the same way; fail here, not in a worker
    # Every value is explicit for the runner, so it could not tell the user's from a default: it
    # keeps these (spec.json, the model card) as it keeps them from its own earlier spec.json.
    config["origins"] = {f"hyperparams.{name}": origin for name, origin in origins.items()}
    return config


def _defaults_for(model: ResolvedModel, method: str) -> dict[str, Any]:
    entry = catalog.get_builtin(model.runner_source)
    if entry is not None:
        return catalog.builtin_defaults(entry.id, method)
    return model.defaults

def default_hyperparams(db: Database, settings: Settings, org_id: str, base_model: str, method: str) -> dict[str, Any]:
    """The hyperparameters a job of `method` on `base_model` gets for each one its request leaves out
    (the base model's defaults over the method's over the schema's): what a dialect's relative value
    scales (OpenAI's learning_rate_multiplier). NotFound for a base model the organization cannot see."""
    model = resolve_base_model(db, settings, org_id, base_model)
    spec = parse_spec({"base_model": base_model, "datasets": [{"path": "-"}], "method": method})
    if not isinstance(spec, TrainingJobSpec):
        raise ValueError(f"a {spec.type} job has no hyperparameters")
    hyperparams, _ = resolve_hyperparams(spec, _defaults_for(model, method))
    return hyperparams.model_dump()
