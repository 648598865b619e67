"""OpenAI's fine-tuning words and tuneyard's: the create body, and the job, event and checkpoint objects.

A create body becomes a finetune job: `supervised` is method `lora` on chat data, `dpo` is method
`dpo` on preference pairs; `n_epochs` is `epochs`, `batch_size` is `batch_size`, `beta` is `beta`,
`learning_rate_multiplier` scales the learning rate the job would get by default, `seed` is the
seed. "auto" (or leaving a value out) is tuneyard's default. What only OpenAI has (model as
named, suffix, metadata, file ids, the multiplier) is kept in the job's `openai` labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StringConstraints, model_validator

from tuneyard.services import fine_tuned_names
from tuneyard.services.job_view import JobView
from tuneyard.spec.text import Ident
from tuneyard.store.status import JobStatus

DIALECT = "openai"

Auto = Literal["auto"]
Epochs = Auto | Annotated[StrictInt, Field(ge=1, le=100)]
BatchSize = Auto | Annotated[StrictInt, Field(ge=1, le=4096)]
Multiplier = Auto | Annotated[StrictFloat | StrictInt, Field(gt=0, le=100)]
Beta = Auto | Annotated[StrictFloat | StrictInt, Field(gt=0, le=10)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Hyperparameters(Strict):
    n_epochs: Epochs | None = None
    batch_size: BatchSize | None = None
    learning_rate_multiplier: Multiplier | None = None


class DpoHyperparameters(Hyperparameters):
    beta: Beta | None = None


class Supervised(Strict):
    hyperparameters: Hyperparameters | None = None


class Dpo(Strict):
    hyperparameters: DpoHyperparameters | None = None


class Method(Strict):
    type: Literal["supervised", "dpo"] = Field(description="reinforcement is not offered: it needs a grader service.")
    supervised: Supervised | None = None
    dpo: Dpo | None = None

    @model_validator(mode="after")
    def _only_its_own_settings(self) -> Method:
        other = "dpo" if self.type == "supervised" else "supervised"
        if getattr(self, other) is not None:
            raise ValueError(f"method.{other} is given but method.type is {self.type!r}")
        return self


class JobCreate(Strict):
    """POST /v1/fine_tuning/jobs, as OpenAI documents it (less `integrations`)."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    training_file: Ident
    validation_file: Ident | None = None
    suffix: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    seed: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] | None = None
    metadata: Annotated[dict[MetadataKey, MetadataValue], Field(max_length=16)] | None = None
    hyperparameters: Hyperparameters | None = Field(None, description="Deprecated: method.<type>.hyperparameters.")
    method: Method | None = None

    @model_validator(mode="after")
    def _one_place_for_hyperparameters(self) -> JobCreate:
        if self.hyperparameters is not None and self.method is not None:
            raise ValueError("give hyperparameters in method.<type>.hyperparameters, not also at the top level")
        return self

    @property
    def method_type(self) -> Literal["supervised", "dpo"]:
        return self.method.type if self.method is not None else "supervised"

    def given_hyperparameters(self) -> Hyperparameters:
        if self.method is None:
            return self.hyperparameters or Hyperparameters()
        settings = self.method.dpo if self.method.type == "dpo" else self.method.supervised
        return (settings.hyperparameters if settings is not None else None) or Hyperparameters()


TUNEYARD_METHOD = {"supervised": "lora", "dpo": "dpo"}
DATA_FORMAT = {"supervised": "chat", "dpo": "preference"}
"""What each method's files must hold: OpenAI's chat JSONL, or its DPO JSONL."""

FIELD_NAMES = {
    "base_model": "model", "datasets.0": "training_file", "datasets.1": "validation_file", "datasets": "training_file",
    "hyperparams.epochs": "hyperparameters.n_epochs", "hyperparams.batch_size": "hyperparameters.batch_size",
    "hyperparams.learning_rate": "hyperparameters.learning_rate_multiplier", "hyperparams.seed": "seed",
    "hyperparams.beta": "method.dpo.hyperparameters.beta", "hyperparams": "hyperparameters",
    "method": "method.type", "name": "suffix",
}
"""The services' field names in OpenAI's words, for the problems they report."""


def hyperparams(body: JobCreate, default_lr: float | None) -> dict[str, Any]:
    """The job's hyperparams from the body's: "auto" and absent are left to tuneyard's defaults."""
    given = body.given_hyperparameters()
    out: dict[str, Any] = {}
    if isinstance(given.n_epochs, int):
        out["epochs"] = given.n_epochs
    if isinstance(given.batch_size, int):
        out["batch_size"] = given.batch_size
    multiplier = given.learning_rate_multiplier
    if not isinstance(multiplier, str) and multiplier is not None and default_lr is not None:
        out["learning_rate"] = default_lr * multiplier
    beta = getattr(given, "beta", None)
    if not isinstance(beta, str) and beta is not None:
        out["beta"] = float(beta)
    if body.seed is not None:
        out["seed"] = body.seed
    return out


def labels(body: JobCreate, training_file: str, validation_file: str | None) -> dict[str, Any]:
    given = body.given_hyperparameters()
    multiplier = given.learning_rate_multiplier
    return {
        "model": body.model, "suffix": body.suffix, "metadata": body.metadata or {},
        "training_file": training_file, "validation_file": validation_file, "method": body.method_type,
        "learning_rate_multiplier": 1.0 if multiplier in (None, "auto") else float(multiplier),
    }


# ---- tuneyard → OpenAI -----------------------------------------------------------------------

def unix(when: datetime | None) -> int | None:
    return None if when is None else int(when.timestamp())


def job_object(view: JobView, status_names: Mapping[JobStatus, str], trained_tokens: int | None,
               progress_at: datetime | None = None) -> dict[str, Any]:
    """The fine_tuning.job object of any job, whichever API made it (a job OpenAI's API did not make
    shows what its spec says: its base model, method and first dataset). `progress_at` is when its
    progress was reported (`timeline.progress_time`), which `estimated_finish` counts from."""
    own = view.labels.get(DIALECT) or {}
    hp = (view.config.get("hyperparams") or {}) if isinstance(view.config, dict) else {}
    method_type = own.get("method") or ("dpo" if view.config.get("method") == "dpo" else "supervised")
    model = own.get("model") or str(view.spec.get("base_model", ""))
    hyperparameters = {"n_epochs": hp.get("epochs"), "batch_size": hp.get("batch_size"),
                       "learning_rate_multiplier": own.get("learning_rate_multiplier", 1.0)}
    method_hyper = {**hyperparameters, "beta": hp.get("beta")} if method_type == "dpo" else hyperparameters
    succeeded = view.status is JobStatus.COMPLETED and view.output_model_id is not None
    return {
        "id": view.id, "object": "fine_tuning.job", "created_at": unix(view.created_at),
        "finished_at": unix(view.finished_at) if view.status.is_terminal() else None,
        "model": model,
        "fine_tuned_model": fine_tuned_names.model_name(model, own.get("suffix"), view.output_model_id or "")
        if succeeded else None,
        "organization_id": view.org_id, "status": status_names[view.status],
        "trained_tokens": trained_tokens, "training_file": own.get("training_file") or _first_dataset(view.spec),
        "validation_file": own.get("validation_file"), "hyperparameters": hyperparameters,
        "method": {"type": method_type, method_type: {"hyperparameters": method_hyper}},
        "seed": hp.get("seed"), "metadata": own.get("metadata") or {}, "error": _error(view, own),
        "result_files": [], "estimated_finish": _estimated_finish(view, progress_at), "integrations": [],
        "suffix": own.get("suffix"), "uuid": view.uuid,
    }


def _first_dataset(spec: Mapping[str, Any]) -> str:
    refs = spec.get("datasets") or []
    first = refs[0] if refs and isinstance(refs[0], dict) else {}
    return str(first.get("id") or first.get("name") or "")


def _error(view: JobView, own: Mapping[str, Any]) -> dict[str, Any] | None:
    """OpenAI's error of a failed job: the error type as code, and the file at fault as param when
    the data was (a data error lists line-numbered errors, each naming its file)."""
    if view.status is not JobStatus.FAILED or view.error is None:
        return None
    details = view.error.get("details") or {}
    field = details.get("field") if isinstance(details, dict) else None
    errors = details.get("errors") if isinstance(details, dict) else None
    param = None
    if isinstance(errors, list) and errors:
        param = "training_file"
        where = str(errors[0].get("file", "")) if isinstance(errors[0], dict) else ""
        if own.get("validation_file") and own["validation_file"] in where:
            param = "validation_file"
    elif isinstance(field, str):
        param = _openai_field(field)
    return {"code": str(view.error.get("error_type") or "failed"), "message": str(view.error.get("message", "")),
            "param": param}


def _openai_field(field: str) -> str:
    for ours, theirs in sorted(FIELD_NAMES.items(), key=lambda item: -len(item[0])):
        if field == ours or field.startswith(ours + "."):
            return theirs + field[len(ours):]
    return field


def _estimated_finish(view: JobView, progress_at: datetime | None) -> int | None:
    # From when the runner said it, not from now: the same job row answers the same object (so a
    # poll of an unchanged job is a 304), and a runner that has gone quiet does not push it later.
    if view.status is not JobStatus.RUNNING or view.progress.eta_s is None or progress_at is None:
        return None
    return int(progress_at.timestamp() + view.progress.eta_s)


Level = Literal["info", "warn", "error"]


def event_object(event_id: str, created_at: datetime, level: Level, message: str, data: Any,
                 kind: Literal["message", "metrics"]) -> dict[str, Any]:
    return {"id": event_id, "object": "fine_tuning.job.event", "created_at": unix(created_at), "level": level,
            "message": message, "data": data, "type": kind}


def checkpoint_object(ckpt_id: str, created_at: datetime, view: JobView, step: int,
                      metrics: Mapping[str, Any]) -> dict[str, Any]:
    own = view.labels.get(DIALECT) or {}
    model = own.get("model") or str(view.spec.get("base_model", ""))
    loss = metrics.get("loss")
    return {
        "id": ckpt_id, "object": "fine_tuning.job.checkpoint", "created_at": unix(created_at),
        "fine_tuned_model_checkpoint": fine_tuned_names.checkpoint_name(model, own.get("suffix"), view.id, step),
        "fine_tuning_job_id": view.id, "step_number": step,
        "metrics": {"step": step, "train_loss": loss if isinstance(loss, int | float) else None},
    }

