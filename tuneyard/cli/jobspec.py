"""The request body of `jobs create`: a spec file, overridden by flags.

Only what the user can fix by retyping the command is checked here (a `--set` that is not
`name=value`, an unknown hyperparameter, a value of the wrong type); the server checks the
whole request and reports every remaining problem at once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

DATASET_ID_PREFIX = "ds_"


class SpecUsageError(ValueError):
    """The command line or spec file cannot make a request; exit 2."""


def parse_value(raw: str) -> Any:
    """JSON where it parses (numbers, true/false, null, lists), a comma list, else the string."""
    try:
        return json.loads(raw)
    except ValueError:
        pass
    if "," in raw:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def type_fields(job_type: str) -> dict[str, tuple[Any, bool]] | None:
    """For a job type without a method, what `--set` may name: name → (its FieldInfo, whether it sits
    in `hyperparams`, as train's knobs do, or beside `base_model`, as contract's and merge's fields
    and train's growth do); None for a type that takes a method, whose hyperparameters are the methods'."""
    from pydantic import BaseModel

    from tuneyard.spec import JOB_TYPES

    if job_type not in JOB_TYPES:
        raise SpecUsageError(f"--type {job_type!r}: expected one of {', '.join(JOB_TYPES.names())}")
    entry = JOB_TYPES.get(job_type)
    if entry.takes_method:
        return None
    fields: dict[str, tuple[Any, bool]] = {}
    for name, info in entry.spec.model_fields.items():
        if name in ("type", "base_model", "datasets"):
            continue
        if name == "hyperparams" and isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            fields.update({k: (v, True) for k, v in info.annotation.model_fields.items()})
        else:
            fields[name] = (info, False)
    return fields


def parse_type_sets(pairs: list[str], fields: dict[str, tuple[Any, bool]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--set name=value` flags as a method-less job type's fields, each checked against its schema:
    (those that go in hyperparams, those that go beside base_model)."""
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError

    nested: dict[str, Any] = {}
    top: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or name not in fields:
            raise SpecUsageError(f"--set {pair!r}: expected name=value with a name of {', '.join(sorted(fields))}")
        value = parse_value(raw)
        info, in_hyperparams = fields[name]
        try:
            checked: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            TypeAdapter(checked).validate_python(value)
        except ValidationError as exc:
            raise SpecUsageError(f"--set {pair!r}: {exc.errors()[0]['msg']}") from None
        (nested if in_hyperparams else top)[name] = value
    return nested, top


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """`--set name=value` flags as hyperparameters, each checked against the schema."""
    # pydantic and the schema load only when a job is being made, not for every command.
    from pydantic import ValidationError

    from tuneyard.spec.methods import METHODS, all_hyperparam_names, methods_with

    known = all_hyperparam_names()

    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise SpecUsageError(f"--set {pair!r}: expected name=value, e.g. --set epochs=2")
        if name not in known:
            raise SpecUsageError(f"--set {pair!r}: unknown hyperparameter {name!r}; "
                                 f"known: {', '.join(sorted(known))}")
        value = parse_value(raw)
        try:  # the method is checked by the server; here, by the first method that takes the name
            METHODS.get(methods_with(name)[0]).hyperparams.model_validate({name: value})
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"].removeprefix("Value error, ")
            raise SpecUsageError(f"--set {pair!r}: {reason}") from None
        values[name] = value
    return values


def load_spec_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecUsageError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SpecUsageError(f"{path} is not valid YAML or JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SpecUsageError(f"{path} must hold a mapping (base_model:, datasets:, ...)")
    return data


def dataset_ref(value: str) -> dict[str, str]:
    """A `--dataset` flag: an id when it looks like one, else a name."""
    return {"id": value} if value.startswith(DATASET_ID_PREFIX) else {"name": value}


Uploader = Callable[[Path, str], str]
"""Uploads a local data file in the given format and returns the ready dataset's id."""


def upload_paths(spec: dict[str, Any], base: Path, upload: Uploader) -> dict[str, Any]:
    """Datasets given by `path:` (as in a runner spec) uploaded, and referred to by id instead."""
    refs = spec.get("datasets")
    if not isinstance(refs, list):
        return spec
    out = []
    for ref in refs:
        if isinstance(ref, dict) and isinstance(ref.get("path"), str):
            path = (base / ref["path"]).resolve()
            if not path.is_file():
                raise SpecUsageError(f"dataset file {path} does not exist")
            rest = {k: v for k, v in ref.items() if k != "path"}
            ref = {**rest, "id": upload(path, str(ref.get("format", "auto")))}
        out.append(ref)
    return {**spec, "datasets": out}


def build_request(
    spec_file: Path | None, *, base_model: str | None, datasets: list[str], method: str | None,
    sets: list[str], name: str | None, project: str | None, upload: Uploader, job_type: str | None = None,
) -> dict[str, Any]:
    """The POST /v1/jobs body: the spec file's content with each given flag over it."""
    spec = load_spec_file(spec_file) if spec_file else {}
    chosen = job_type or spec.get("type")
    fields = type_fields(chosen) if isinstance(chosen, str) else None
    if fields is None:
        hyperparams = parse_sets(sets)
    else:
        hyperparams, own = parse_type_sets(sets, fields)
        spec.update(own)
    if datasets:
        spec["datasets"] = [dataset_ref(d) for d in datasets]
    elif spec_file:
        spec = upload_paths(spec, spec_file.parent, upload)
    overrides = {"type": job_type, "base_model": base_model, "method": method, "name": name, "project_id": project}
    spec.update({k: v for k, v in overrides.items() if v is not None})
    if hyperparams:
        current = spec.get("hyperparams")
        spec["hyperparams"] = {**(current if isinstance(current, dict) else {}), **hyperparams}
    if "base_model" not in spec:
        raise SpecUsageError("give a spec file or --base-model")
    return spec
