"""Auto-training: when a task's new completed trajectories reach the organization's threshold, and
its cooldown has passed, build a dataset from the task's trajectories and submit the configured job
— exactly once per window, however many API processes ingest at once or restart.

Exactly once rests on three things: the store's guarded transition consumes the window once
(store/auto_training.try_fire); the dataset of a window has a fixed name and content, so building it
again returns the same one; the job is submitted with an idempotency key derived from task + window
as the key that configured auto-training, so submitting it again returns the same job. A process
that dies between those steps leaves the run `fired`; whoever ingests next for the organization
past `STALE_AFTER` finishes it (recover).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, ValidationError

from tuneyard.services import jobs, templates
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.submission import JobRequest, plan_job
from tuneyard.services.trajectories import _problems, _Strict
from tuneyard.services.trajectory_datasets import BuildFilters, build_dataset
from tuneyard.settings import Settings
from tuneyard.store import auto_training as store
from tuneyard.store import tenancy
from tuneyard.store import trajectories as trajectory_store
from tuneyard.store.engine import Database
from tuneyard.store.errors import Conflict
from tuneyard.store.tenancy import Principal
from tuneyard.store.trajectory_tables import AutoTrainingRun

log = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=10)
"""A run still `fired` this long after its claim was left by a process that died mid-way."""
STARTUP_STALE_AFTER = timedelta(minutes=1)
"""At start-up, sooner: a live process finishes a run in seconds, and finishing one twice makes
the same dataset and job anyway."""
TEMPLATE_PLACEHOLDER = "ds_auto_training_placeholder"


class AutoTrainingConfigIn(_Strict):
    """The organization's auto-training (document 003's GET/PUT words); the defaults are what an
    organization that never set it has."""

    enabled: bool = Field(False, description="Off until turned on.")
    threshold: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        100, description="New completed trajectories of one task that fire a build and a job.")
    cooldown_hours: Annotated[float, Field(ge=0, le=8760)] = Field(
        24.0, alias="cooldownHours", description="At least this long between two firings of one task.")
    job_template: dict[str, Any] = Field(
        default_factory=dict, alias="jobTemplate",
        description="The job to submit, as a POST /v1/jobs body without `datasets` (the built dataset is "
                    "added): base_model, method, hyperparams. Needed when enabled.")
    activate_if_better: bool = Field(
        False, alias="activateIfBetter",
        description="Evaluate each run's model against the task's active one (or its base, for the task's first) on "
                    "the run's held-out split, and activate it for serving only when its held-out loss is lower. "
                    "The job template needs an eval_split for there to be a held-out split.")


DEFAULTS = AutoTrainingConfigIn()


def get_config(db: Database, org_id: str) -> AutoTrainingConfigIn:
    row = store.get_config(db, org_id)
    if row is None:
        return DEFAULTS
    return AutoTrainingConfigIn.model_validate({"enabled": row.enabled, "threshold": row.threshold,
                                                "cooldownHours": row.cooldown_hours, "jobTemplate": row.job_template,
                                                "activateIfBetter": row.activate_if_better})


def put_config(db: Database, settings: Settings, caller: Principal, body: Any) -> AutoTrainingConfigIn:
    """Check the whole config (the template as a job would be, but for its datasets) and store it."""
    try:
        config = AutoTrainingConfigIn.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(_problems(exc, "")) from exc
    problems = _template_problems(db, settings, caller.org_id, config)
    if problems:
        raise InvalidRequest(problems)
    values = store.ConfigValues(config.enabled, config.threshold, config.cooldown_hours, config.job_template,
                                config.activate_if_better)
    store.put_config(db, caller.org_id, values, caller.key_id)
    return config


def update_config(db: Database, settings: Settings, caller: Principal, changes: Any) -> AutoTrainingConfigIn:
    """Document 003's PUT: the fields given replace the stored ones, the others are kept; the result
    is checked whole, as `put_config` checks it."""
    if not isinstance(changes, Mapping):
        raise InvalidRequest([{"field": "(body)", "message": "expected a JSON object of the fields to change"}])
    current = get_config(db, caller.org_id).model_dump(by_alias=True)
    return put_config(db, settings, caller, {**current, **changes})


def _template_problems(db: Database, settings: Settings, org_id: str,
                       config: AutoTrainingConfigIn) -> list[dict[str, Any]]:
    template = config.job_template
    if not template:
        return [{"field": "jobTemplate", "message": "give the job to submit"}] if config.enabled else []
    if "datasets" in template:
        return [{"field": "jobTemplate.datasets", "message": "each firing supplies the dataset it built"}]
    try:
        # As complete() submits it: a job template may itself name a template (`"template": "lora-chat"`).
        request = JobRequest(spec={**template, "datasets": [{"id": TEMPLATE_PLACEHOLDER}]})
        plan_job(db, settings, org_id, templates.with_template(db, org_id, request))
    except InvalidRequest as exc:
        return [{**p, "field": f"jobTemplate.{p['field']}"} for p in exc.problems
                if not str(p["field"]).startswith("datasets")]
    return []


def after_ingest(db: Database, settings: Settings, org_id: str, tasks: list[str]) -> list[AutoTrainingRun]:
    """Fire what the ingestion made due, and finish runs a dead process left; the runs this call fired."""
    row = store.get_config(db, org_id)
    if row is None or not row.enabled:
        return []
    for stale in store.claim_stale(db, org_id, STALE_AFTER):
        complete(db, settings, stale)
    fired = []
    for task in tasks:
        run = store.try_fire(db, org_id, task, row.threshold, row.cooldown_hours)
        if run is not None:
            log.info("auto-training %s: task %r window %d fired: %s", run.id, task, run.window, run.reason)
            complete(db, settings, run)
            fired.append(run)
    return fired


def recover(db: Database, settings: Settings, org_id: str, older_than: timedelta = STALE_AFTER) -> list[str]:
    """Finish the runs left `fired` (a restart's job); the ids finished."""
    runs = store.claim_stale(db, org_id, older_than)
    for run in runs:
        complete(db, settings, run)
    return [r.id for r in runs]


def recover_unfinished(db: Database, settings: Settings, older_than: timedelta = STARTUP_STALE_AFTER) -> list[str]:
    """Every organization's runs a dead process left `fired`, finished (run at the API's start-up)."""
    return [run for org_id in store.orgs_with_unfinished_runs(db)
            for run in recover(db, settings, org_id, older_than)]


def complete(db: Database, settings: Settings, run: AutoTrainingRun) -> None:
    """Build the run's dataset and submit its job; each step returns what an earlier try made."""
    config = store.get_config(db, run.org_id)
    # A revoked key keeps its row (the foreign key's SET NULL never fires): it must not go on acting.
    if config is None or config.key_id is None or not tenancy.key_is_live(db, run.org_id, config.key_id):
        store.finish(db, run.id, error={"message": "auto-training has no live key to submit as: the key that "
                                                   "set it was revoked or deleted (set it again)"})
        return
    selection = trajectory_store.Selection(statuses=("completed",), task=run.task, through_seq=run.through_seq)
    filters = BuildFilters(name=f"auto-training-{run.task or 'untasked'}-{run.window}")
    try:
        built = build_dataset(db, settings, run.org_id, filters, selection=selection)
        store.set_dataset(db, run.id, built.dataset.id)
        request = JobRequest(spec={**config.job_template, "datasets": [{"id": built.dataset.id}]},
                             name=f"auto-training {run.task or '(no task)'} #{run.window}",
                             idempotency_key=f"auto-training:{run.idempotency_key}")
        submitted = jobs.submit_job(db, settings, Principal(run.org_id, config.key_id, False), request)
    except (InvalidRequest, Conflict) as exc:  # the request's fault: trying again would not help
        log.warning("auto-training %s: refused: %s", run.id, exc)
        store.finish(db, run.id, error={"message": str(exc)})
        return
    except Exception:  # left `fired`: recover() tries again later
        log.exception("auto-training %s: failed; left for recovery", run.id)
        return
    store.finish(db, run.id, job_id=submitted.job.id)


def history(db: Database, org_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """When auto-training fired, why, and what it made (newest first)."""
    return [{"id": r.id, "task": r.task or None, "window": r.window, "status": r.status, "reason": r.reason,
             "datasetId": r.dataset_id, "jobId": r.job_id, "error": r.error,
             "evaluationId": r.evaluation_id, "promotion": r.promotion,
             "createdAt": r.created_at.isoformat(),
             "finishedAt": r.finished_at.isoformat() if r.finished_at else None}
            for r in store.list_runs(db, org_id, limit)]
