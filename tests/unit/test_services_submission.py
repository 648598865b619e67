"""Job submission on the in-memory store: the whole request checked at once, a runner-valid
config, idempotent replays that spend no rate-limit quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.store import memory_database
from tuneyard.api.schemas.job_create import job_request
from tuneyard.services import datasets, files
from tuneyard.services.errors import InvalidRequest, RateLimited
from tuneyard.services.jobs import submit_job
from tuneyard.services.submission import JobRequest, plan_job
from tuneyard.settings import Settings
from tuneyard.store import tenancy
from tuneyard.store.engine import Database
from tuneyard.store.errors import IdempotencyConflict
from tuneyard.store.tenancy import Principal
from tuneyard.training.config import resolve

CHATS = b'{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}\n' * 3


@pytest.fixture
def db() -> Database:
    return memory_database()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, job_create_rate_per_minute=2)


@pytest.fixture
def caller(db: Database) -> Principal:
    org = tenancy.create_org(db, "acme")
    key, _ = tenancy.create_api_key(db, org.id, "k")
    return Principal(org.id, key.id, False)


@pytest.fixture
def dataset_id(db: Database, settings: Settings, caller: Principal, tmp_path: Path) -> str:
    with (tmp_path / "c.jsonl").open("wb+") as handle:
        handle.write(CHATS)
        handle.seek(0)
        stored = files.upload_file(db, settings, caller.org_id, "c.jsonl", handle)
    made = datasets.create_dataset(db, caller.org_id, datasets.DatasetCreate("chats", [stored.id]))
    assert made.status == "ready"
    return made.id


def test_config_is_resolved_and_runner_valid(db: Database, settings: Settings, caller: Principal,
                                             dataset_id: str) -> None:
    body = {"base_model": "tiny-llama", "datasets": [{"name": "chats"}], "hyperparams": {"max_steps": 7},
            "idempotency_key": "k"}
    plan = plan_job(db, settings, caller.org_id, job_request(body))
    runner_config = resolve(plan.config, settings.data_dir, settings.resolved_model_cache_dir, {})  # as the runner
    assert runner_config.hyperparams.max_steps == 7
    # every value is explicit for the runner; where each came from travels beside it
    assert runner_config.origins["max_steps"] == "user" and runner_config.origins["learning_rate"] == "base_model"
    assert plan.config["hyperparams"]["learning_rate"] == 1.0e-3  # tiny-llama's size tier, not the schema's
    assert plan.config["datasets"][0]["path"].startswith(str(settings.data_dir / "files"))
    assert "idempotency_key" not in plan.spec and plan.idempotency_key == "k"
    assert plan.dataset_ids == [dataset_id]


def test_every_problem_at_once(db: Database, settings: Settings, caller: Principal) -> None:
    body = {"base_model": "gpt-99", "datasets": [{"id": "ds_gone"}, {"path": "/etc/passwd"}, 7],
            "method": "sideways", "hyperparams": {"epochs": 0}, "project_id": "proj_x", "idempotency_key": "a"}
    with pytest.raises(InvalidRequest) as refused:
        plan_job(db, settings, caller.org_id, job_request(body, header_key="b"))
    fields = {p["field"] for p in refused.value.problems}
    assert {"base_model", "datasets.0", "datasets.1.path", "datasets.2", "method", "hyperparams.epochs",
            "project_id", "idempotency_key"} <= fields


def test_replays_spend_no_quota_and_other_bodies_conflict(
    db: Database, settings: Settings, caller: Principal, dataset_id: str
) -> None:
    body = {"base_model": "tiny-llama", "datasets": [{"id": dataset_id}]}
    first = submit_job(db, settings, caller, job_request(body, "same"))
    for _ in range(5):
        replay = submit_job(db, settings, caller, job_request(body, "same"))
        assert replay.job.id == first.job.id and not replay.created
    with pytest.raises(IdempotencyConflict):
        submit_job(db, settings, caller, job_request({**body, "name": "changed"}, "same"))
    second = submit_job(db, settings, caller, job_request(body))
    assert second.created and second.rate.remaining == 0
    with pytest.raises(RateLimited) as limited:
        submit_job(db, settings, caller, job_request(body))
    assert limited.value.limit == 2 and 1 <= limited.value.retry_after_s <= 60


def test_a_request_another_api_built_is_checked_whole_with_the_problems_it_brought(
    db: Database, settings: Settings, caller: Principal
) -> None:
    request = JobRequest(spec={"base_model": "gpt-99", "datasets": [{"name": "chats"}]}, name="x" * 300,
                         problems=({"field": "steps", "message": "must be at least 1"},))
    with pytest.raises(InvalidRequest) as refused:
        plan_job(db, settings, caller.org_id, request)
    assert [p["field"] for p in refused.value.problems] == ["steps", "name", "base_model", "datasets.0"]


def test_without_the_words_it_was_sent_in_a_job_stores_its_spec_with_its_name(
    db: Database, settings: Settings, caller: Principal, dataset_id: str
) -> None:
    request = JobRequest(spec={"base_model": "tiny-llama", "datasets": [{"id": dataset_id}]}, name="mine")
    submitted = submit_job(db, settings, caller, request)
    assert submitted.job.spec == {"base_model": "tiny-llama", "datasets": [{"id": dataset_id}], "name": "mine"}
    assert submitted.job.name == "mine" and submitted.job.status == "queued"


def test_the_native_body_keeps_its_own_field_names() -> None:
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        job_request([{"base_model": "tiny-llama"}])
    request = job_request({"base_model": "m", "name": 5, "project_id": "p" * 129, "idempotency_key": "a"}, "b")
    assert [p["field"] for p in request.problems] == ["name", "project_id", "idempotency_key"]
    assert (request.name, request.project_id, request.idempotency_key) == (None, None, "a")
    assert request.spec == {"base_model": "m"} and "idempotency_key" not in (request.submitted or {})
    assert job_request({"base_model": "m"}, "h" * 256).problems[0]["field"] == "Idempotency-Key"
