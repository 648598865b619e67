"""The job spec: what to run. Pure data; imports no torch.

A spec arrives from a user (YAML/JSON file, HTTP body), is validated whole, then resolved:
defaults filled in from the base model and the schema, each value's origin recorded, so
`spec.json` beside a run says exactly what ran and why.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tuneyard.errors import SpecError
from tuneyard.spec.hyperparams import Hyperparams

JobType = Literal["finetune", "train", "contract", "merge"]
Method = Literal["lora", "full", "qlora"]
DataFormat = Literal["auto", "chat", "sharegpt", "alpaca", "prompt_completion", "text"]

# Where a resolved value came from, most specific first.
ORIGIN_USER = "user"
ORIGIN_BASE_MODEL = "base_model"
ORIGIN_METHOD = "method"
ORIGIN_DEFAULT = "default"

# Defaults that depend on the method: full fine-tuning moves every weight, so it wants a
# learning rate about ten times smaller than LoRA's.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "lora": {},
    "qlora": {},
    "full": {"learning_rate": 2.0e-5},
}


class DatasetRef(BaseModel):
    """One data source: a file path (runner), or a stored dataset by id or name (service)."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(None, description="A JSONL, CSV or Parquet file.")
    id: str | None = Field(None, description="A stored dataset's id.")
    name: str | None = Field(None, description="A stored dataset's name.")
    format: DataFormat = Field("auto", description="The record format; detected when 'auto'.")
    split: Literal["train", "eval"] = Field("train", description="Train on it, or hold it out for eval.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> DatasetRef:
        given = [k for k in ("path", "id", "name") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of path, id or name")
        return self


class JobSpec(BaseModel):
    """A job as the user wrote it. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    type: JobType = "finetune"
    base_model: str = Field(..., min_length=1, max_length=1024)
    datasets: list[DatasetRef] = Field(default_factory=list)
    method: Method = "lora"
    hyperparams: Hyperparams = Field(default_factory=Hyperparams)

    @model_validator(mode="after")
    def _needs_training_data(self) -> JobSpec:
        if self.type in ("finetune", "train") and not any(d.split == "train" for d in self.datasets):
            raise ValueError("a finetune or train job needs at least one training dataset")
        return self


def problems_from(error: ValidationError) -> list[dict[str, Any]]:
    """Every problem pydantic found, as {field, message} with a dotted field path."""
    out = []
    for item in error.errors():
        field = ".".join(str(p) for p in item["loc"]) or "(body)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        out.append({"field": field, "message": message})
    return out


def parse_spec(data: Any) -> JobSpec:
    """Validate a whole user spec at once; raise SpecError listing every problem."""
    if not isinstance(data, dict):
        raise SpecError([{"field": "(body)", "message": "the spec must be a mapping"}])
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(problems_from(exc)) from None


def resolve_hyperparams(
    spec: JobSpec, base_model_defaults: dict[str, Any] | None = None
) -> tuple[Hyperparams, dict[str, str]]:
    """Fill in hyperparameters the user left out; return them with each value's origin.

    Precedence: user > base model default (for this method) > method default > schema default.
    """
    user_given = spec.hyperparams.model_fields_set
    layers = [  # later layers win
        (ORIGIN_METHOD, METHOD_DEFAULTS.get(spec.method, {})),
        (ORIGIN_BASE_MODEL, base_model_defaults or {}),
    ]
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in Hyperparams.model_fields:
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
        return Hyperparams.model_validate(values), origins
    except ValidationError as exc:
        raise SpecError(problems_from(exc), "the base model's defaults are invalid") from None
