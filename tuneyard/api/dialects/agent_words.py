"""Document 003's words (an agent's training API on /api/training) for jobs and models: its job body
in, its job, model and benchmark objects out, and the rule that tells its job body from 002's.

Both documents POST to /api/training/jobs. A body is in the words of the document whose fields it
uses (`which_document`): 002's are snake_case (`base_model`, `dataset_path`, ...), 003's camelCase
or single words (`datasetId`, `backend`, `model`, ...); no field name is in both. A body with fields
of both is refused naming each of them; a body with neither (`{}`, or only unknown fields) is 003's,
whose fields are all optional, so its unknown fields are reported as such.

003's job fields: `datasetId` → `datasets: [{id}]` (id or UUID; omitted: the newest dataset built
from trajectories); `maxTrajectories` → a dataset built from at most N trajectories (`agent_training`);
`backend` → native/omitted: the server's trainer on the best device it has, cpu/cuda: only where a
live worker trains on it, mlx: never (the trainer is torch); `model` → `base_model` (`DEFAULT_MODEL`
when omitted); `iterations` → `hyperparams.max_steps`; `batchSize`, `learningRate` → the same
hyperparameters. docs/dialects.md has the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tuneyard.api.dialects import statuses
from tuneyard.api.dialects.http import BODY, epoch_ms
from tuneyard.api.dialects.training_words import LocalTrainingJob
from tuneyard.planning.memory import Device
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.spec.text import Ident, Reference
from tuneyard.store.tables import TrainedModel
from tuneyard.training.models.catalog import SMOLLM2_135M

AGENT = statuses.AGENT_TRAINING

DEFAULT_MODEL = SMOLLM2_135M
"""003's `model` when omitted: the built-in instruct model (an agent's chats need a chat template)."""
EVAL_SPLIT = 0.1
"""What a 003 job holds out of its dataset, so `/models/:id/benchmark` measures its model on
examples it never trained on (003 has no field for it)."""
BACKENDS = ("native", "cpu", "cuda", "mlx")
Backend = Literal["native", "cpu", "cuda", "mlx"]

NAMES = {"base_model": "model", "datasets": "datasetId", "datasets.0": "datasetId",
         "hyperparams.max_steps": "iterations", "hyperparams.batch_size": "batchSize",
         "hyperparams.learning_rate": "learningRate"}
"""The services' field paths in 003's words."""


class AgentTrainingJob(BaseModel):
    """POST /api/training/jobs in 003's words; every field is optional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    dataset_id: Ident | None = Field(None, alias="datasetId", description=(
        "A dataset's id or UUID; omitted: the newest dataset built from trajectories."))
    max_trajectories: int | None = Field(None, alias="maxTrajectories", ge=1, le=100_000, description=(
        "Train on a dataset built from at most this many trajectories (the latest)."))
    backend: Backend | None = Field(None, description=(
        "native (default): the server's trainer on the best device it has; cpu or cuda: trained by a "
        "worker of that device only, and offered only where one is live; mlx: not offered (400)."))
    model: Reference | None = Field(None, description=f"The base model; omitted: {DEFAULT_MODEL}.")
    iterations: int | None = Field(None, ge=1, le=10_000_000, description="Training steps (max_steps).")
    batch_size: int | None = Field(None, alias="batchSize", ge=1, le=4096)
    learning_rate: float | None = Field(None, alias="learningRate", gt=0, le=1.0)

    def spec(self, base_model: str, dataset_id: str | None) -> dict[str, Any]:
        """The engine's spec (`dataset_id` None: checked without its data)."""
        hyperparams: dict[str, Any] = {"eval_split": EVAL_SPLIT}
        for field, engine in (("iterations", "max_steps"), ("batch_size", "batch_size"),
                              ("learning_rate", "learning_rate")):
            if getattr(self, field) is not None:
                hyperparams[engine] = getattr(self, field)
        spec: dict[str, Any] = {"type": "finetune", "base_model": base_model, "method": "lora",
                                "hyperparams": hyperparams}
        if dataset_id is not None:
            spec["datasets"] = [{"id": dataset_id}]
        return spec

    def required_device(self) -> Device | None:
        """The device the job must train on: `cpu` or `cuda` as named; None for `native` or omitted
        (the best device any worker has). `mlx` is refused before this (`backend_problem`)."""
        return self.backend if self.backend == "cpu" or self.backend == "cuda" else None

    def shown_config(self) -> dict[str, Any]:
        """The body as 003 wrote it (its own words), for the answer's `config`."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


LOCAL_FIELDS = frozenset(LocalTrainingJob.model_fields)
AGENT_FIELDS = frozenset(info.alias or name for name, info in AgentTrainingJob.model_fields.items())


def which_document(body: Any) -> Literal["002", "003"]:
    """Whose words a job body is in (see the module); InvalidRequest for a body using both."""
    if not isinstance(body, Mapping):
        return "002"  # 002's required fields make its check say what a body should be
    local, agent = sorted(LOCAL_FIELDS & set(body)), sorted(AGENT_FIELDS & set(body))
    if local and agent:
        message = (f"mixes document 002's fields ({', '.join(local)}) with document 003's ({', '.join(agent)}); "
                   "a job body is in one document's words")
        raise InvalidRequest([{"field": name, "message": message} for name in (*local, *agent)],
                             "the body mixes two documents' fields")
    return "002" if local else "003"


def backend_problem(backend: str | None, devices: frozenset[str]) -> dict[str, str] | None:
    """Why this server cannot train on `backend` (None when it can). `devices`: what its live
    workers train on (this host's device when none is registered yet)."""
    if backend in (None, "native"):
        return None
    have = ", ".join(sorted(devices)) or "none"
    if backend == "mlx":
        return {"field": "backend", "message": (
            "backend 'mlx' is not available on this server: tuneyard trains with torch, not Apple's MLX; "
            f"its workers train on {have}: use 'native' or one of those")}
    if backend not in devices:
        return {"field": "backend", "message": (
            f"backend {backend!r} is not available on this server: its workers train on {have}; "
            "use 'native' (the best device there is) or one of those")}
    return None


def job_object(view: JobView) -> dict[str, Any]:
    """003's job object (status in its words, progress 0–1, iterations, dates in epoch ms), with the
    backend a 003 body asked for (`native` for jobs made otherwise) and, beyond the document, why a
    queued job waits (`waitingReason`: the native `waiting_reason`, e.g. its backend's worker is gone)."""
    progress = view.progress
    asked = view.labels.get("local_training") or {}
    return {
        "id": view.id, "status": AGENT[view.status], "datasetId": dataset_of(view),
        "backend": asked.get("backend") or "native", "model": view.spec.get("base_model"),
        "createdAt": epoch_ms(view.created_at), "completedAt": epoch_ms(view.finished_at),
        "progress": None if progress.percent is None else round(progress.percent / 100, 4),
        "currentIteration": progress.step, "totalIterations": progress.total_steps, "loss": view.loss,
        "waitingReason": view.waiting,
    }


def dataset_of(view: JobView) -> str | None:
    """The dataset the job trains on, as it named it (002's jobs: the one copied from dataset_path)."""
    named = view.spec.get("dataset_id")
    if isinstance(named, str):
        return named
    refs = view.spec.get("datasets")
    first = refs[0] if isinstance(refs, list) and refs and isinstance(refs[0], dict) else {}
    found = first.get("id") or first.get("name")
    return found if isinstance(found, str) else None


def model_object(model: TrainedModel, name: str, active: bool) -> dict[str, Any]:
    """003's model: id, the job that made it, a name, when, and whether serving has it activated."""
    return {"id": model.id, "uuid": model.uuid, "jobId": model.job_id, "name": name,
            "createdAt": epoch_ms(model.created_at), "active": active, "baseModel": model.base_model,
            "kind": model.kind}


def model_name(model: TrainedModel, job_name: str | None) -> str:
    """The name 003 shows: its job's name, else `<base model>-<model id>`."""
    return job_name or f"{model.base_model}-{model.id}"


def body_object(body: Any) -> Mapping[str, Any]:
    """A body that must be a JSON object (or absent): InvalidRequest naming the body otherwise."""
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise InvalidRequest([{"field": BODY, "message": "expected a JSON object"}])
    return body
