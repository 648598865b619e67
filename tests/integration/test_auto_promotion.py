"""Auto-training's promotion (activateIfBetter): a run's model is evaluated against the task's active
model (its base, for the first) and activated only when its held-out loss is lower; decided once,
skipped with the reason where it cannot be decided. SQLite and PostgreSQL.

No runner runs: jobs and evaluations are completed through the store as a worker would; serving is
a recorder that marks activations in the store as the real one does (services/serving.py is tested
with its process in test_api_serving.py)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.test_auto_training import ingest
from tests.support.api import make_tenant
from tuneyard.scheduler import claim
from tuneyard.services import auto_promotion, auto_training
from tuneyard.services.runs import run_dir
from tuneyard.settings import Settings
from tuneyard.store import Database, activations, lifecycle
from tuneyard.store import auto_training as store
from tuneyard.store import jobs as jobs_store
from tuneyard.store.tenancy import Principal

TEMPLATE = {"base_model": "tiny-llama", "method": "lora", "hyperparams": {"max_steps": 2, "eval_split": 0.25}}


class Recorder:
    def __init__(self, db: Database) -> None:
        self.db, self.calls = db, []  # type: ignore[var-annotated]

    def serving(self) -> auto_promotion.Serving:
        def activate(org_id: str, model_id: str) -> None:
            self.calls.append(("activate", model_id))
            activations.activate(self.db, org_id, model_id, backend="transformers", export_id=None,
                                 provider_model=None)

        def deactivate(org_id: str, model_id: str) -> None:
            self.calls.append(("deactivate", model_id))
            activations.deactivate(self.db, org_id, model_id)

        return auto_promotion.Serving(activate, deactivate)


def configure(db: Database, settings: Settings, promote: bool = True) -> Principal:
    tenant = make_tenant(db, f"acme-{uuid.uuid4().hex[:6]}")
    caller = Principal(tenant.org_id, tenant.key_id, False)
    auto_training.put_config(db, settings, caller, {"enabled": True, "threshold": 4, "cooldownHours": 0,
                                                    "jobTemplate": TEMPLATE, "activateIfBetter": promote})
    return caller


def finish_job(db: Database, settings: Settings, job_id: str, result: dict[str, Any] | None = None,
               trains: bool = True) -> None:
    """Claim the job and complete it as a worker would (a finetune leaves a model; an evaluation does not)."""
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None and claimed.job_id == job_id
    lifecycle.start(db, job_id, claimed.attempt)
    lifecycle.finalize(db, job_id, claimed.attempt)
    job = jobs_store.load_job(db, job_id)
    model = lifecycle.NewTrainedModel(kind="adapter", path=str(run_dir(settings, job_id) / "final"),
                                      base_model="tiny-llama", datasets=job.spec["datasets"]) if trains else None
    lifecycle.complete(db, job_id, claimed.attempt, result or {}, model)


def evaluation(new_loss: float, old_loss: float) -> dict[str, Any]:
    return {"method": "reference", "trained": {"loss": new_loss}, "base": {"loss": old_loss}, "samples": []}


def fire(db: Database, settings: Settings, org_id: str) -> Any:
    [run_id] = ingest(db, settings, org_id, 4)
    [run] = [r for r in store.list_runs(db, org_id) if r.id == run_id]
    assert run.status == "submitted", run.error
    return run


def test_a_better_model_is_activated_and_a_worse_one_kept(db: Database, settings: Settings) -> None:
    caller = configure(db, settings)
    recorder = Recorder(db)
    first = fire(db, settings, caller.org_id)
    assert auto_promotion.sweep(db, settings, recorder.serving()) == []  # still training
    finish_job(db, settings, first.job_id)
    assert auto_promotion.sweep(db, settings, recorder.serving()) == []  # the evaluation is submitted
    [first] = [r for r in store.list_runs(db, caller.org_id) if r.id == first.id]
    evaluating = jobs_store.load_job(db, first.evaluation_id)
    assert evaluating.type == "evaluate" and evaluating.spec["compare_with"] == "tiny-llama"  # the task's first
    assert (evaluating.config["eval_split"], evaluating.config["seed"]) == (0.25, 0)
    model_one = jobs_store.load_job(db, first.job_id).output_model_id
    assert evaluating.spec["base_model"] == model_one
    finish_job(db, settings, evaluating.id, evaluation(1.0, 2.0), trains=False)
    assert auto_promotion.sweep(db, settings, recorder.serving()) == [first.id]
    assert recorder.calls == [("activate", model_one)]
    promotion = store.list_runs(db, caller.org_id)[0].promotion
    assert promotion is not None and promotion["decision"] == "activated"
    assert promotion["loss"] == {"model": 1.0, "compared_with": 2.0}

    second = fire(db, settings, caller.org_id)
    finish_job(db, settings, second.job_id)
    auto_promotion.sweep(db, settings, recorder.serving())
    [second] = [r for r in store.list_runs(db, caller.org_id) if r.id == second.id]
    against = jobs_store.load_job(db, second.evaluation_id)
    assert against.spec["compare_with"] == model_one, "compared with the task's active model"
    finish_job(db, settings, against.id, evaluation(1.5, 1.0), trains=False)
    assert auto_promotion.sweep(db, settings, recorder.serving()) == [second.id]
    assert recorder.calls == [("activate", model_one)], "a worse model is not activated"
    [second] = [r for r in store.list_runs(db, caller.org_id) if r.id == second.id]
    assert second.promotion is not None and second.promotion["decision"] == "kept"
    history = auto_training.history(db, caller.org_id)
    assert history[0]["promotion"]["decision"] == "kept" and history[0]["evaluationId"] == against.id

    third = fire(db, settings, caller.org_id)
    finish_job(db, settings, third.job_id)
    auto_promotion.sweep(db, settings, recorder.serving())
    [third] = [r for r in store.list_runs(db, caller.org_id) if r.id == third.id]
    finish_job(db, settings, third.evaluation_id, evaluation(0.5, 1.0), trains=False)
    assert auto_promotion.sweep(db, settings, recorder.serving()) == [third.id]
    model_three = jobs_store.load_job(db, third.job_id).output_model_id
    assert recorder.calls[1:] == [("activate", model_three), ("deactivate", model_one)]
    assert auto_promotion.sweep(db, settings, recorder.serving()) == [], "each run is decided once"


def test_a_decision_is_written_once(db: Database, settings: Settings) -> None:
    caller = configure(db, settings)
    run = fire(db, settings, caller.org_id)
    assert store.decide(db, run.id, {"decision": "kept"})
    assert not store.decide(db, run.id, {"decision": "activated"})
    assert store.list_runs(db, caller.org_id)[0].promotion == {"decision": "kept"}


def test_what_cannot_be_decided_is_skipped_with_the_reason(db: Database, settings: Settings) -> None:
    caller = configure(db, settings)
    recorder = Recorder(db)
    run = fire(db, settings, caller.org_id)
    claimed = claim(db, "fake-worker", 60)
    assert claimed is not None
    lifecycle.fail(db, run.job_id, "user_error", "bad data", attempt=claimed.attempt)
    assert auto_promotion.sweep(db, settings, recorder.serving()) == [run.id]
    promotion = store.list_runs(db, caller.org_id)[0].promotion
    assert promotion == {"decision": "skipped", "reason": f"its job {run.job_id} is failed"}
    assert recorder.calls == []


def test_nothing_held_out_is_skipped_and_off_by_default(db: Database, settings: Settings) -> None:
    caller = configure(db, settings, promote=False)
    assert auto_training.get_config(db, caller.org_id).activate_if_better is False
    run = fire(db, settings, caller.org_id)
    finish_job(db, settings, run.job_id)
    assert auto_promotion.sweep(db, settings, Recorder(db).serving()) == []
    assert store.list_runs(db, caller.org_id)[0].promotion is None  # off: nothing evaluated, nothing decided
    auto_training.put_config(db, settings, caller, {"enabled": True, "threshold": 4, "cooldownHours": 0,
                                                    "jobTemplate": {**TEMPLATE, "hyperparams": {"max_steps": 2}},
                                                    "activateIfBetter": True})
    other = fire(db, settings, caller.org_id)
    finish_job(db, settings, other.job_id)
    auto_promotion.sweep(db, settings, Recorder(db).serving())
    promotion = {r.id: r.promotion for r in store.list_runs(db, caller.org_id)}[other.id]
    assert promotion is not None and promotion["decision"] == "skipped"
    assert "held no examples out" in promotion["reason"]
