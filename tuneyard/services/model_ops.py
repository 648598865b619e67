"""Model operations asked of a finished job: merging a LoRA job's adapter into its base.

`POST /v1/jobs/{id}/merge` (and the Training API's route of the same name) is a merge job whose
`base_model` is the job's trained adapter; this builds that job's body, refusing a job that has
no adapter to merge, and the usual submission checks the rest.
"""

from __future__ import annotations

from typing import Any

from tuneyard.services.errors import InvalidRequest
from tuneyard.store import catalog as models_store
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.tables import Job


def merge_body(db: Database, job: Job) -> dict[str, Any]:
    """The body of the merge job that folds `job`'s LoRA adapter into its base."""
    if job.output_model_id is None:
        raise InvalidRequest([{"field": "job_id", "message": (
            f"job {job.id} is {job.status} and has no trained model to merge; merge a completed LoRA job")}])
    try:
        model = models_store.get_trained_model(db, job.org_id, job.output_model_id)
    except NotFound:
        raise InvalidRequest([{"field": "job_id", "message": (
            f"job {job.id}'s trained model {job.output_model_id} was deleted; there is nothing to merge")}]) from None
    if model.kind != "adapter":
        raise InvalidRequest([{"field": "job_id", "message": (
            f"job {job.id} trained {model.kind} weights ({model.id}), not a LoRA adapter; there is nothing to merge")}])
    return {"type": "merge", "base_model": model.id}
