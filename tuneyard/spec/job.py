"""The job spec: what to run. Pure data; imports no torch.

A spec arrives from a user (YAML/JSON file, HTTP body), is validated whole, then resolved:
defaults filled in from the base model and the schema, each value's origin recorded, so
`spec.json` beside a run says exactly what ran and why. Each job type has its own spec model
(its parameters), registered in `tuneyard.spec.jobtypes`; `tuneyard.spec.parse` validates a spec
as the union of them, discriminated by `type`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema, model_validator

from tuneyard.spec.formats import format_choices
from tuneyard.spec.hyperparams import Hyperparams
from tuneyard.spec.text import Ident, Name, Reference

# Where a resolved value came from, most specific first.
ORIGIN_USER = "user"
ORIGIN_BASE_MODEL = "base_model"
ORIGIN_METHOD = "method"
ORIGIN_DEFAULT = "default"


def _known_format(value: str) -> str:
    if value not in format_choices():
        raise ValueError(f"expected one of {', '.join(format_choices())}")
    return value


DataFormatName = Annotated[
    str, AfterValidator(_known_format), WithJsonSchema({"type": "string", "enum": list(format_choices())})
]
"""A data format a user may name: "auto" or one registered in tuneyard.spec.formats."""


class DatasetRef(BaseModel):
    """One data source: a file path (runner), or a stored dataset by id or name (service)."""

    model_config = ConfigDict(extra="forbid")

    path: Reference | None = Field(None, description="A JSONL, CSV or Parquet file.")
    id: Ident | None = Field(None, description="A stored dataset's id.")
    name: Name | None = Field(None, description="A stored dataset's name.")
    format: DataFormatName = Field(
        "auto", description="The record format (see tuneyard.spec.formats); detected when 'auto'."
    )
    split: Literal["train", "eval"] = Field("train", description="Train on it, or hold it out for eval.")

    @model_validator(mode="after")
    def _exactly_one_source(self) -> DatasetRef:
        given = [k for k in ("path", "id", "name") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of path, id or name")
        return self


class JobSpecBase(BaseModel):
    """What every job names: its type, the model it starts from and its data. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    type: str
    base_model: Reference
    datasets: list[DatasetRef] = Field(default_factory=list)


class TrainingJobSpec(JobSpecBase):
    """A job that trains weights with a method (`tuneyard.spec.methods`) and its hyperparameters.

    `hyperparams` is validated by the method's model (the shared fields plus the method's own)."""

    method: str = "lora"
    hyperparams: Hyperparams = Field(default_factory=Hyperparams)


class FinetuneSpec(TrainingJobSpec):
    """Fine-tune a model on data."""

    type: Literal["finetune"] = "finetune"


class TrainSpec(TrainingJobSpec):
    """Grow the model (function-preserving depth growth), then train it; growth parameters to come."""

    type: Literal["train"] = "train"


class ContractSpec(JobSpecBase):
    """Prune the model (layers, MLP width); pruning parameters to come."""

    type: Literal["contract"] = "contract"


class MergeSpec(JobSpecBase):
    """Fold a trained LoRA adapter into its base model. Takes no data.

    `base_model` names the adapter: a trained LoRA model or a checkpoint of a LoRA job (the
    service), or an adapter folder (the runner). Its own base is the one the adapter names."""

    type: Literal["merge"] = "merge"
    adapter_base: Reference | None = Field(None, description=(
        "The base to fold the adapter into, where not the one its adapter_config.json names: the service "
        "gives the folder of a registered base or trained model the adapter names by its id."))
    datasets: list[DatasetRef] = Field(default_factory=list, max_length=0)


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
