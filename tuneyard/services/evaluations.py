"""Evaluations of trained models: evaluate jobs, asked of a model and read back as evaluations.

`POST /v1/models/{id}/evaluations` is an evaluate job (queued, claimed, supervised, retried and
fenced like every job) whose `base_model` is the trained model. Its held-out text is, by default,
what the model's training job held out: that job's datasets (the lineage the worker recorded on
the model) with the job's own `eval_split` and `seed`, so the same records are held out again;
or, when a dataset is given, every record of that dataset. The usual submission checks the rest
(`services/submission.py` resolves `compare_with`, the model's base, and adds the operator's judge).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from tuneyard.services.errors import InvalidRequest
from tuneyard.services.job_view import JobView
from tuneyard.services.jobs import views
from tuneyard.settings import Settings
from tuneyard.store import catalog as models_store
from tuneyard.store import datasets as datasets_store
from tuneyard.store import jobs as jobs_store
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import Job, TrainedModel

JOB_TYPE = "evaluate"
_REF_FIELDS = ("id", "name", "format", "split")


@dataclass(frozen=True)
class EvaluationOptions:
    """What a caller may choose of an evaluation; the rest follows from the model."""

    dataset: str | None = None
    """A dataset's id or name whose every record is evaluated; None: what training held out."""
    max_examples: int = 50
    samples: int = 3
    max_new_tokens: int = 64


@dataclass(frozen=True)
class Evaluation:
    """An evaluate job as clients read it: the job, and its result card (paths shown) once completed."""

    job: JobView
    model_id: str
    compare_with: str | None
    result: dict[str, Any] | None


def evaluation_body(db: Database, org_id: str, model: TrainedModel, options: EvaluationOptions) -> dict[str, Any]:
    """The evaluate job's body: the model, the model it is compared with, and its held-out text."""
    body: dict[str, Any] = {
        "type": JOB_TYPE, "base_model": model.id, "compare_with": model.base_model,
        "max_examples": options.max_examples, "samples": options.samples,
        "generation": {"max_new_tokens": options.max_new_tokens},
    }  # fmt: skip
    if options.dataset is not None:
        return {**body, "datasets": [{"id": _dataset_id(db, org_id, options.dataset), "split": "eval"}]}
    return {**body, **_held_out_by_training(db, org_id, model)}


def _dataset_id(db: Database, org_id: str, given: str) -> str:
    for lookup in (datasets_store.get_dataset, datasets_store.get_dataset_by_name):
        try:
            return lookup(db, org_id, given).id
        except NotFound:
            continue
    raise InvalidRequest([{"field": "dataset", "message": f"no dataset {given!r}"}])


def _held_out_by_training(db: Database, org_id: str, model: TrainedModel) -> dict[str, Any]:
    """The training job's datasets and the split it held out; InvalidRequest naming `dataset` where
    there is nothing held out to find (no data, a job since deleted, nothing held out)."""
    refs = [_ref(given) for given in model.datasets if isinstance(given, dict | str)]
    if not refs:
        raise _give_dataset(f"model {model.id} was trained on no dataset")
    try:
        job = jobs_store.get_job(db, org_id, model.job_id or "")
    except NotFound:
        raise _give_dataset(f"model {model.id}'s training job was deleted, and with it the split it held out") \
            from None
    hyperparams: Mapping[str, Any] = job.config.get("hyperparams") or {}
    eval_split, seed = hyperparams.get("eval_split"), hyperparams.get("seed")
    held_out = any(ref.get("split") == "eval" for ref in refs) or (isinstance(eval_split, float) and eval_split > 0)
    if not held_out or not isinstance(seed, int):
        raise _give_dataset(f"model {model.id}'s training job {job.id} held no examples out")
    length = hyperparams.get("max_seq_length") or hyperparams.get("seq_len")
    return {"datasets": refs, "eval_split": eval_split or 0.0, "seed": seed,
            **({"max_seq_length": length} if isinstance(length, int) else {})}


def _ref(given: dict[str, Any] | str) -> dict[str, Any]:
    """A dataset of the lineage as the job named it: a ref, or (older rows) a dataset id alone."""
    return {"id": given} if isinstance(given, str) else {k: v for k, v in given.items() if k in _REF_FIELDS}


def _give_dataset(why: str) -> InvalidRequest:
    return InvalidRequest([{"field": "dataset", "message": f"{why}: give a dataset to evaluate on"}])


def list_evaluations(db: Database, settings: Settings, org_id: str, model_id: str) -> list[Evaluation]:
    """The model's evaluations, newest first (NotFound for a model of another organization)."""
    models_store.get_trained_model(db, org_id, model_id)
    stmt = (select(Job).where(Job.org_id == org_id, Job.type == JOB_TYPE)
            .order_by(Job.created_at.desc(), Job.id.desc()))
    with db.read() as session:
        rows = [job for job in session.scalars(stmt) if (job.spec or {}).get("base_model") == model_id]
    return _evaluations(db, settings, rows)


def get_evaluation(db: Database, settings: Settings, org_id: str, evaluation_id: str,
                   model_id: str | None = None) -> Evaluation:
    """One evaluation; NotFound for another organization's, for a job of another type, or (with
    `model_id`) for one of another model."""
    job = jobs_store.get_job(db, org_id, evaluation_id)
    if job.type != JOB_TYPE or (model_id is not None and (job.spec or {}).get("base_model") != model_id):
        raise NotFound("evaluation", evaluation_id)
    return _evaluations(db, settings, [job])[0]


def _evaluations(db: Database, settings: Settings, rows: list[Job]) -> list[Evaluation]:
    out = []
    for job, view in zip(rows, views(db, settings, rows), strict=True):
        spec = job.spec or {}
        result = view.paths.value(job.result) if job.result is not None else None
        out.append(Evaluation(view, str(spec.get("base_model")), spec.get("compare_with"), result))
    return out
