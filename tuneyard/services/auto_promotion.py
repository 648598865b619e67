"""Auto-training's last step, for an organization that turns it on (`activateIfBetter`): each run's
model is evaluated and activated for serving only when it beats the model its task has active.

The incumbent is the model the task's newest promotion activated, while it is still active; a task
with none compares the new model with its own base. The evaluation is an evaluate job
(`services/evaluations.py`) on the run's held-out split with `compare_with` the incumbent, so both
are measured on the same examples; "beats" is a lower held-out loss (the figure that every
evaluation has, judge or not). The decision is written once (a guarded update, store/auto_training
`decide`), then acted on: the new model activated, the incumbent deactivated. Anything that makes a
decision impossible (the job failed, nothing held out, the key revoked) is recorded as `skipped`
with the reason, so a run is never retried for ever.

`sweep` advances every waiting run one step; the API runs it every `SWEEP_SECONDS` in a thread
(`watch`). Serving is reached through `Serving`, two functions the app builds from its supervisor.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tuneyard.services import jobs, serving
from tuneyard.services.errors import InvalidRequest
from tuneyard.services.evaluations import EvaluationOptions, evaluation_body
from tuneyard.services.submission import JobRequest
from tuneyard.serving.supervisor import ServingSupervisor
from tuneyard.settings import Settings
from tuneyard.store import activations, catalog, tenancy
from tuneyard.store import auto_training as store
from tuneyard.store import jobs as jobs_store
from tuneyard.store.engine import Database
from tuneyard.store.errors import NotFound
from tuneyard.store.status import JobStatus
from tuneyard.store.tables import Job
from tuneyard.store.tenancy import Principal
from tuneyard.store.trajectory_tables import AutoTrainingRun

log = logging.getLogger(__name__)

SWEEP_SECONDS = 5.0
"""How often the API looks for runs whose job or evaluation has finished."""
ENDED = (JobStatus.FAILED.value, JobStatus.CANCELLED.value)


@dataclass(frozen=True)
class Serving:
    """What promotion needs of serving: activate and deactivate a model (org_id, model_id)."""

    activate: Callable[[str, str], None]
    deactivate: Callable[[str, str], None]


def start(db: Database, settings: Settings, supervisor: ServingSupervisor) -> threading.Event:
    """Run `watch` in a daemon thread through the app's serving supervisor; set the event to stop it."""
    stop = threading.Event()

    def activate(org_id: str, model_id: str) -> None:
        serving.activate(db, settings, supervisor, org_id, model_id, backend=None, provider_model=None)

    def deactivate(org_id: str, model_id: str) -> None:
        serving.deactivate(db, supervisor, org_id, model_id)

    threading.Thread(target=watch, args=(db, settings, Serving(activate, deactivate), stop), daemon=True,
                     name="auto-training-promotion").start()
    return stop


def watch(db: Database, settings: Settings, serving: Serving, stop: threading.Event) -> None:
    """Sweep every SWEEP_SECONDS until `stop` is set; a failing sweep is logged and tried again."""
    while not stop.wait(SWEEP_SECONDS):
        try:
            sweep(db, settings, serving)
        except Exception:
            log.exception("auto-training promotion: the sweep failed; trying again")


def sweep(db: Database, settings: Settings, serving: Serving) -> list[str]:
    """Advance each run waiting on its promotion by one step; the ids of the runs decided now."""
    decided = []
    for run in store.runs_awaiting_promotion(db):
        if _advance(db, settings, serving, run):
            decided.append(run.id)
    return decided


def _advance(db: Database, settings: Settings, serving: Serving, run: AutoTrainingRun) -> bool:
    try:
        job = jobs_store.get_job(db, run.org_id, run.job_id or "")
    except NotFound:
        return _skip(db, run, f"its job {run.job_id} was deleted")
    if job.status in ENDED:
        return _skip(db, run, f"its job {job.id} is {job.status}")
    if job.status != JobStatus.COMPLETED.value or job.output_model_id is None:
        return False  # still training
    if run.evaluation_id is None:
        return _evaluate(db, settings, run, job.output_model_id)
    try:
        evaluation = jobs_store.get_job(db, run.org_id, run.evaluation_id)
    except NotFound:
        return _skip(db, run, f"its evaluation {run.evaluation_id} was deleted")
    if evaluation.status in ENDED:
        message = (evaluation.error or {}).get("message", evaluation.status)
        return _skip(db, run, f"its evaluation {evaluation.id} is {evaluation.status}: {message}")
    if evaluation.status != JobStatus.COMPLETED.value:
        return False
    return _conclude(db, serving, run, job.output_model_id, evaluation)


def _evaluate(db: Database, settings: Settings, run: AutoTrainingRun, model_id: str) -> bool:
    """Submit the run's evaluation (idempotent: a key from the run's), or skip what cannot be evaluated."""
    config = store.get_config(db, run.org_id)
    if config is None or config.key_id is None or not tenancy.key_is_live(db, run.org_id, config.key_id):
        return _skip(db, run, "auto-training has no live key to submit its evaluation as")
    model = catalog.get_trained_model(db, run.org_id, model_id)
    incumbent = _incumbent(db, run)
    try:
        body = evaluation_body(db, run.org_id, model, EvaluationOptions())
        if incumbent is not None:
            body["compare_with"] = incumbent
        request = JobRequest(spec=body, name=f"auto-training evaluation {run.task or '(no task)'} #{run.window}",
                             idempotency_key=f"auto-training-evaluation:{run.idempotency_key}")
        submitted = jobs.submit_job(db, settings, Principal(run.org_id, config.key_id, False), request)
    except InvalidRequest as exc:  # nothing held out, say: evaluating again would not help
        return _skip(db, run, f"its model cannot be evaluated: {exc}")
    store.set_evaluation(db, run.id, submitted.job.id)
    log.info("auto-training %s: evaluating %s against %s (job %s)", run.id, model_id,
             incumbent or "its base", submitted.job.id)
    return False


def _incumbent(db: Database, run: AutoTrainingRun) -> str | None:
    """The model the task's newest promotion activated, while it is still active."""
    for promoted in store.promoted_runs(db, run.org_id, run.task):
        model_id = (promoted.promotion or {}).get("model_id")
        if promoted.id != run.id and isinstance(model_id, str) and \
                activations.get_activation(db, run.org_id, model_id) is not None:
            return model_id
    return None


def _conclude(db: Database, serving: Serving, run: AutoTrainingRun, model_id: str, evaluation: Job) -> bool:
    result: dict[str, Any] = evaluation.result or {}
    new, old = (result.get("trained") or {}).get("loss"), (result.get("base") or {}).get("loss")
    if not isinstance(new, int | float) or not isinstance(old, int | float):
        return _skip(db, run, f"its evaluation {evaluation.id} has no held-out loss to compare")
    compared_with = (evaluation.spec or {}).get("compare_with")
    incumbent = compared_with if isinstance(compared_with, str) and compared_with.startswith("model_") else None
    decision = {"decision": "activated" if new < old else "kept", "model_id": model_id,
                "compared_with": compared_with, "evaluation_id": evaluation.id,
                "loss": {"model": new, "compared_with": old}}
    if not store.decide(db, run.id, decision):
        return False  # another process decided it, and acts on it
    log.info("auto-training %s: %s %s (held-out loss %.4f against %.4f of %s)", run.id, decision["decision"],
             model_id, new, old, compared_with)
    if decision["decision"] == "activated":
        try:
            serving.activate(run.org_id, model_id)
            if incumbent is not None:
                serving.deactivate(run.org_id, incumbent)
        except Exception as exc:  # the decision stands; what became of it is recorded
            log.exception("auto-training %s: activating %s failed", run.id, model_id)
            store.amend_promotion(db, run.id, {**decision, "decision": "activation_failed", "error": str(exc)})
    return True


def _skip(db: Database, run: AutoTrainingRun, reason: str) -> bool:
    log.warning("auto-training %s: not promoted: %s", run.id, reason)
    return store.decide(db, run.id, {"decision": "skipped", "reason": reason})
