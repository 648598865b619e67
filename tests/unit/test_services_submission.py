"""Job submission on the in-memory store: the whole request checked at once, a runner-valid
config, idempotent replays that spend no rate-limit quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.store import memory_database
from tuneyard.services import datasets, files
from tuneyard.services.errors import InvalidRequest, RateLimited
from tuneyard.services.jobs import submit_job
from tuneyard.services.submission import plan_job
from tuneyard.settings import Settings
from tuneyard.spec import parse_spec
from tuneyard.store import tenancy
from tuneyard.store.engine import Database
from tuneyard.store.errors import IdempotencyConflict
from tuneyard.store.tenancy import Principal

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
    plan = plan_job(db, settings, caller.org_id, {"base_model": "tiny-llama", "datasets": [{"name": "chats"}],
                                                  "hyperparams": {"max_steps": 7}, "idempotency_key": "k"})
    assert parse_spec(plan.config).hyperparams.max_steps == 7
    assert plan.config["hyperparams"]["learning_rate"] == 1.0e-3  # tiny-llama's size tier, not the schema's
    assert plan.config["datasets"][0]["path"].startswith(str(settings.data_dir / "files"))
    assert "idempotency_key" not in plan.spec and plan.idempotency_key == "k"
    assert plan.dataset_ids == [dataset_id]


def test_every_problem_at_once(db: Database, settings: Settings, caller: Principal) -> None:
    body = {"base_model": "gpt-99", "datasets": [{"id": "ds_gone"}, {"path": "/etc/passwd"}, 7],
            "method": "sideways", "hyperparams": {"epochs": 0}, "project_id": "proj_x", "idempotency_key": "a"}
    with pytest.raises(InvalidRequest) as refused:
        plan_job(db, settings, caller.org_id, body, header_key="b")
    fields = {p["field"] for p in refused.value.problems}
    assert {"base_model", "datasets.0", "datasets.1.path", "datasets.2", "method", "hyperparams.epochs",
            "project_id", "idempotency_key"} <= fields


def test_replays_spend_no_quota_and_other_bodies_conflict(
    db: Database, settings: Settings, caller: Principal, dataset_id: str
) -> None:
    body = {"base_model": "tiny-llama", "datasets": [{"id": dataset_id}]}
    first = submit_job(db, settings, caller, body, idempotency_key="same")
    for _ in range(5):
        replay = submit_job(db, settings, caller, body, idempotency_key="same")
        assert replay.job.id == first.job.id and not replay.created
    with pytest.raises(IdempotencyConflict):
        submit_job(db, settings, caller, {**body, "name": "changed"}, idempotency_key="same")
    second = submit_job(db, settings, caller, body)
    assert second.created and second.rate.remaining == 0
    with pytest.raises(RateLimited) as limited:
        submit_job(db, settings, caller, body)
    assert limited.value.limit == 2 and 1 <= limited.value.retry_after_s <= 60
