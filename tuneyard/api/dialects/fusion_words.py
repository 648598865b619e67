"""Fusion's words (reference document 001) and the services': its run bodies in, its objects out.

A Fusion run is one of three bodies, told apart by `type`; each becomes the engine's spec of the
same job type (tuneyard.spec.job), its ids (UUIDs, or native ids) turned into native ids first:

| Fusion                                   | engine spec                                         |
|------------------------------------------|-----------------------------------------------------|
| train: base_model_id, dataset_id         | type train, base_model, datasets [{id}]             |
| train: hyperparams.*                     | hyperparams.* (GrowthHyperparams has Fusion's names)|
| finetune: source_model_id (top level or  | type finetune, method lora, base_model              |
|   in hyperparams) or base_model_id       |                                                     |
| finetune: hyperparams.lora_rank / steps  | hyperparams.lora_rank / max_steps (32 / 2000 unset) |
| finetune: hyperparams.lr / seq_len       | hyperparams.learning_rate / max_seq_length          |
| contract: hyperparams.source_model_id    | type contract, base_model                           |
| contract: hyperparams.contraction_ratio, | contraction_ratio, num_layers_to_contract           |
|   num_layers_to_contract                 |                                                     |
| hyperparams.output_name                  | the job's name (and train's own output_name)        |
| idempotency_key (required)               | the service's idempotency key                       |

The services' problems come back renamed into these words (`translate.renamed`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.services.submission import JobRequest, Problems
from tuneyard.spec import problems_from
from tuneyard.spec.text import Ident, Key, Name
from tuneyard.store.telemetry import MetricRecord

DIALECT = "fusion"

FINETUNE_DEFAULTS = {"lora_rank": 32, "max_steps": 2000}
"""What 001 says a finetune run's lora_rank and steps default to (tuneyard's own are 16 and one epoch)."""
FINETUNE_NAMES = {"steps": "max_steps", "lr": "learning_rate", "seq_len": "max_seq_length"}
"""A finetune run's knobs named as the train run names them, and their engine names; any other key
of its hyperparams is passed to the engine's LoRA hyperparameters as it is (batch_size, seed, ...)."""
CONTRACT_KNOBS = ("contraction_ratio", "num_layers_to_contract")
MODEL_FIELD = "source_model_id"
NAME_FIELD = "output_name"
MODEL_FIELDS = {"train": "base_model_id", "finetune": MODEL_FIELD, "contract": f"hyperparams.{MODEL_FIELD}"}
"""Where each run type names its model first."""


class FusionRun(BaseModel):
    """POST /jobs: one run, train | finetune | contract. The rest of a body is checked per type."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["train", "finetune", "contract"] = Field(description="The run type.")
    idempotency_key: Key = Field(description="Required. Re-using a key returns the same job.")
    base_model_id: Ident | None = Field(None, description="train: the model to grow; finetune: a catalog base.")
    source_model_id: Ident | None = Field(None, description="finetune, contract: the model to start from.")
    dataset_id: Ident | None = Field(None, description="train, finetune: the dataset (from GET /datasets).")
    hyperparams: dict[str, Any] = Field(default_factory=dict, description="The run type's knobs.")


Resolve = Any
"""(kind, ref) -> the native id, or the ref as it is when it names nothing (the service says so)."""


def run_request(body: Any, resolve: Resolve) -> tuple[JobRequest, dict[str, str]]:
    """The services' request for a Fusion body, and how to name the service's fields in Fusion's
    words; InvalidRequest (every problem at once) when the body is not a run at all."""
    if not isinstance(body, dict):
        raise InvalidRequest([{"field": "(body)", "message": "the body must be a JSON object"}])
    try:
        run = FusionRun.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(problems_from(exc)) from None
    problems: Problems = []
    hyperparams = dict(run.hyperparams)
    name = _output_name(hyperparams, problems, keep=run.type == "train")
    model_field, model = _model_of(run, hyperparams, problems, lambda ref: resolve("base_model", ref))
    spec: dict[str, Any] = {"type": run.type, "base_model": model}
    if run.type == "contract":
        spec.update({k: hyperparams.pop(k) for k in CONTRACT_KNOBS if k in hyperparams})
        problems.extend({"field": f"hyperparams.{k}", "message": "unknown field"} for k in hyperparams)
    elif run.type == "finetune":
        renamed = {FINETUNE_NAMES.get(k, k): v for k, v in hyperparams.items()}
        spec.update(method="lora", hyperparams={**FINETUNE_DEFAULTS, **renamed})
    else:
        spec["hyperparams"] = hyperparams
    if run.dataset_id is not None:  # a contract run's is its calibration text (001 gives it none)
        spec["datasets"] = [{"id": resolve("dataset", run.dataset_id)}]
    if spec["base_model"] is None:
        del spec["base_model"]
    names = {"base_model": model_field, "datasets": "dataset_id", "datasets.0": "dataset_id",
             "name": f"hyperparams.{NAME_FIELD}", **{k: f"hyperparams.{k}" for k in CONTRACT_KNOBS}}
    if run.type == "finetune":
        names.update({f"hyperparams.{engine}": f"hyperparams.{fusion}" for fusion, engine in FINETUNE_NAMES.items()})
    submitted = {k: v for k, v in body.items() if k != "idempotency_key"}
    request = JobRequest(spec=spec, name=name, idempotency_key=run.idempotency_key, problems=tuple(problems),
                         submitted=submitted, dialect=DIALECT)
    return request, names


def _output_name(hyperparams: dict[str, Any], problems: Problems, *, keep: bool) -> str | None:
    """The new model's name, which names the job too; a train run's engine spec keeps its own copy."""
    value = hyperparams.get(NAME_FIELD) if keep else hyperparams.pop(NAME_FIELD, None)
    if value is None:
        return None
    try:
        return str(_NAME.validate_python(value))
    except ValidationError as exc:
        problems.extend({"field": f"hyperparams.{NAME_FIELD}", "message": p["message"]} for p in problems_from(exc))
        hyperparams.pop(NAME_FIELD, None)
        return None


_NAME: TypeAdapter[str] = TypeAdapter(Name)


def _model_of(run: FusionRun, hyperparams: dict[str, Any], problems: Problems,
              resolve: Any) -> tuple[str, str | None]:
    """(the Fusion field that names the model, its native id) for the run's type; problems for a
    missing model, or for two that name different ones."""
    nested = hyperparams.pop(MODEL_FIELD, None) if run.type != "train" else None
    if nested is not None and not isinstance(nested, str):
        problems.append({"field": f"hyperparams.{MODEL_FIELD}", "message": "expected a model id (a string)"})
        nested = None
    given = {field: value for field, value in (("base_model_id", run.base_model_id),
                                               (MODEL_FIELD, run.source_model_id),
                                               (f"hyperparams.{MODEL_FIELD}", nested)) if value is not None}
    allowed = {"train": ("base_model_id",), "finetune": tuple(given),
               "contract": (MODEL_FIELD, f"hyperparams.{MODEL_FIELD}")}[run.type]
    for field in given:
        if field not in allowed:
            problems.append({"field": field, "message": f"not a field of a {run.type} run"})
    chosen = {field: resolve(value) for field, value in given.items() if field in allowed}
    if len(set(chosen.values())) > 1:
        message = "name the model once: these disagree"
        problems.extend({"field": field, "message": message} for field in chosen)
    if not chosen:  # the service reports the missing model, under the field named here
        return MODEL_FIELDS[run.type], None
    field = next(iter(chosen))
    return field, chosen[field]


# ---- answers ---------------------------------------------------------------------------------------

def job_object(view: JobView, model_uuid: str | None, status_names: Mapping[Any, str], iso: Any) -> dict[str, Any]:
    """The job object: exactly 001's fields (its 201 answer, each item of GET /jobs, GET /jobs/{id})."""
    return {
        "id": view.uuid, "type": view.type, "status": status_names[view.status], "retries": view.retries,
        "last_checkpoint_step": view.last_checkpoint_step or 0, "output_model_id": model_uuid,
        "created_at": iso(view.created_at), "started_at": iso(view.started_at), "finished_at": iso(view.finished_at),
    }


def metric_point(point: MetricRecord, steps_per_cycle: int | None, iso: Any) -> dict[str, Any]:
    """One point as 001 prints it; `cycle` counts the learning-rate cycles from 1 (an epoch where the
    run's cycles are its epochs), `throughput` is tokens a second, `vram_gb` the peak device memory
    (on a CPU the process's resident memory)."""
    values = point.values
    # A point's epoch is its step over the steps of an epoch: step 16 of 16 ends epoch 1.0.
    cycle = (point.step - 1) // steps_per_cycle + 1 if steps_per_cycle else math.ceil(point.epoch or 1)
    return {"ts": iso(point.ts), "step": point.step, "cycle": max(1, cycle),
            "phase": "train" if point.phase in (None, "training") else point.phase,
            "loss": _finite(values.get("loss")), "lr": _finite(values.get("lr")),
            "throughput": _finite(values.get("tokens_per_s")), "vram_gb": _finite(values.get("memory_gb")),
            "grad_norm": _finite(values.get("grad_norm"))}


def _finite(value: Any) -> Any:
    # A diverged run logs NaN or inf, which JSON cannot carry: null.
    return None if isinstance(value, float) and not math.isfinite(value) else value


STDERR_LEVELS = frozenset({"warning", "error", "critical"})


def log_line(shown: Mapping[str, Any]) -> dict[str, Any]:
    """A console line (`timeline.log_dict`'s) as 001 prints it: warnings and errors are the run's
    stderr, the rest its stdout."""
    stream = "stderr" if shown["level"] in STDERR_LEVELS else "stdout"
    return {"seq": shown["seq"], "ts": shown["ts"], "stream": stream, "text": shown["message"]}


def timeline_event(shown: Mapping[str, Any]) -> dict[str, Any]:
    """An event (`timeline.event_dict`'s) as {ts, kind, payload}: the kind is the event's name (created,
    claimed, running, finalizing, completed, retrying, lease_expired, checkpoint, ...: every
    transition writes one), the payload its message and data."""
    return {"ts": shown["created_at"], "kind": shown["type"],
            "payload": {"message": shown["message"], "data": shown["data"] or {}}}


RESULT_FIELDS = ("ppl_baseline", "ppl_final", "ppl_delta_pct", "loss_final", "params_before", "params_after",
                 "params_delta", "function_preservation", "gpu_seconds", "tokens_processed", "cost_usd")


def result_card(job_uuid: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """001's result card from the runner's: a fine-tune keeps its size (params_total before and after),
    `gpu_seconds` is the run's device seconds (CPU seconds on a host without an accelerator, which is
    what cost_usd was priced on), and a figure the run could not measure is null."""
    card = {field: result.get(field) for field in RESULT_FIELDS}
    total = result.get("params_total")
    if card["params_before"] is None and total is not None:
        card.update(params_before=total, params_after=total, params_delta=0)
    before, after = card["ppl_baseline"], card["ppl_final"]
    if card["ppl_delta_pct"] is None and isinstance(before, int | float) and isinstance(after, int | float) and before:
        card["ppl_delta_pct"] = 100.0 * (after - before) / before
    if card["gpu_seconds"] is None:
        card["gpu_seconds"] = result.get("compute_seconds")
    return {"job_id": job_uuid, **{k: _finite(v) for k, v in card.items()}}
