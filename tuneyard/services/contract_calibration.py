"""A contraction's calibration text, resolved to files at submission (the runner reads files, never ids).

The text channels are scored on and perplexity and KL are measured on is, the first there is of:
the job's `calibration_dataset` (a stored dataset by id or name, every record of it); its
`datasets` (the runner reads them as it reads them for healing); the held-out split of the source
model's own training data. That last is the lineage: the trained model (or checkpoint) the job
contracts was made by a job whose resolved config names its files, its `eval_split` and its `seed`,
so the runner holds out the same records that training never saw (`training.heldout`). A model made
by a job without data of its own (a merge, a contraction) is followed to the model it was made from.
Where there is nothing held out, there is no calibration text: weight magnitude, figures null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tuneyard.spec.job import ContractSpec, JobSpecBase
from tuneyard.store import catalog as models_store
from tuneyard.store import jobs as jobs_store
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import Job
from tuneyard.store.telemetry import get_checkpoint

ResolveDataset = Callable[[dict[str, Any], str], "tuple[str, list[dict[str, Any]]] | None"]
"""(a dataset ref as given, the field it is reported under) → (dataset id, one ref per file), or None
with the problem recorded."""

MAX_HOPS = 8
"""Models made from models without data (merge of a merge of ...) followed at most this far."""


def contract_calibration(
    db: Database, org_id: str, spec: JobSpecBase | None, given: Mapping[str, Any], resolve: ResolveDataset,
    problems: list[dict[str, Any]],
) -> dict[str, Any]:
    """The config fields a contract job's runner gets for its calibration text ({} for other jobs).
    With the spec refused elsewhere (None), the dataset it names is still looked up, so that every
    problem of the request is reported at once."""
    if spec is None:
        ref = given.get("calibration_dataset") if given.get("type") == "contract" else None
        named = any(str(p["field"]).startswith("calibration_dataset") for p in problems)
        if isinstance(ref, Mapping) and ref.get("path") is None and not named:
            resolve(dict(ref), "calibration_dataset")
        return {}
    if not isinstance(spec, ContractSpec):
        return {}
    if spec.calibration is not None:
        problems.append({"field": "calibration", "message": (
            "set by the service from calibration_dataset or the source model's lineage; give calibration_dataset")})
        return {}
    if spec.calibration_dataset is not None:
        return _calibration_dataset(spec, given, resolve, problems)
    if spec.datasets:
        return {}
    held = lineage_held_out(db, org_id, spec.base_model)
    return {"calibration": held} if held is not None else {}


def _calibration_dataset(
    spec: ContractSpec, given: Mapping[str, Any], resolve: ResolveDataset, problems: list[dict[str, Any]]
) -> dict[str, Any]:
    assert spec.calibration_dataset is not None
    if spec.calibration_dataset.path is not None:
        problems.append({"field": "calibration_dataset.path",
                         "message": "the API takes datasets by id or name; upload files first"})
        return {}
    ref = given.get("calibration_dataset")
    resolved = resolve(dict(ref), "calibration_dataset") if isinstance(ref, Mapping) else None
    if resolved is None:
        return {}
    dataset_id, files = resolved
    return {"calibration_dataset": None, "calibration": {
        "origin": "calibration_dataset", "source_id": dataset_id,
        "datasets": [{**ref, "split": "eval"} for ref in files],  # every record of it is calibration text
    }}  # fmt: skip


def lineage_held_out(db: Database, org_id: str, base_model: str) -> dict[str, Any] | None:
    """The held-out split of the training data of the model `base_model` names (a trained model or a
    checkpoint), as a CalibrationText; None where it names neither, or its training held nothing out."""
    name = base_model
    for _ in range(MAX_HOPS):
        found = _making_job(db, org_id, name)
        if found is None:
            return None
        job, made_from = found
        if job.config.get("datasets"):
            return _held_out(job, name)
        if isinstance(job.config.get("calibration"), dict):  # a contraction of a contraction: the same text
            return dict(job.config["calibration"])
        if made_from is None:
            return None
        name = made_from
    return None


def _making_job(db: Database, org_id: str, name: str) -> tuple[Job, str | None] | None:
    """The job that made the trained model or checkpoint `name`, and the model it was made from as
    the job's lineage named it; None for anything else (a base model, a deleted job)."""
    try:
        if name.startswith("model_"):
            model = models_store.get_trained_model(db, org_id, name)
            return jobs_store.get_job(db, org_id, model.job_id or ""), model.base_model
        if name.startswith("ckpt_"):  # only training jobs, with data of their own, keep checkpoints
            return jobs_store.get_job(db, org_id, get_checkpoint(db, org_id, name).job_id), None
    except NotFound:
        return None
    return None


def _held_out(job: Job, source_id: str) -> dict[str, Any] | None:
    """What `job` held out of its datasets: its eval-split files whole, and its eval_split share of the
    train-split records by its seed. None for preference pairs (DPO: not text to measure a language
    model on), for nothing held out, or for files no longer there."""
    refs = [r for r in job.config.get("datasets") or [] if isinstance(r, dict) and isinstance(r.get("path"), str)]
    hyperparams = job.config.get("hyperparams") or {}
    eval_split, seed = hyperparams.get("eval_split") or 0.0, hyperparams.get("seed") or 0
    held = any(r.get("split") == "eval" for r in refs) or (isinstance(eval_split, float) and eval_split > 0)
    if job.config.get("method") == "dpo" or not held or not isinstance(seed, int):
        return None
    if not all(Path(r["path"]).is_file() for r in refs):
        return None
    return {"origin": "lineage", "source_id": source_id, "eval_split": float(eval_split), "seed": seed,
            "datasets": [{k: r[k] for k in ("path", "format", "split") if k in r} for r in refs]}
