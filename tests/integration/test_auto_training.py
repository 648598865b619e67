"""Auto-training fires exactly once per window: four processes ingesting at once across the
threshold make one dataset and one job; a process that died after firing is finished by the next
one (never fired twice); the cooldown and `enabled` are respected. SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.api import make_tenant, trajectory_body
from tuneyard.services import auto_training, trajectories
from tuneyard.services.errors import InvalidRequest
from tuneyard.settings import Settings
from tuneyard.store import Database, make_engine, tenancy
from tuneyard.store import auto_training as store
from tuneyard.store.ids import utcnow
from tuneyard.store.tables import Dataset, Job
from tuneyard.store.tenancy import Principal

TEMPLATE = {"base_model": "tiny-llama", "method": "lora", "hyperparams": {"max_steps": 2}}
PROCESSES = 4
EACH = 3  # 12 trajectories a round: one crossing of a threshold of 10, never two


def configure(db: Database, settings: Settings, *, enabled: bool = True, threshold: int = 10,
              cooldown_hours: float = 0) -> Principal:
    tenant = make_tenant(db, f"acme-{uuid.uuid4().hex[:6]}")
    caller = Principal(tenant.org_id, tenant.key_id, False)
    auto_training.put_config(db, settings, caller, {"enabled": enabled, "threshold": threshold,
                                                    "cooldownHours": cooldown_hours, "jobTemplate": TEMPLATE})
    return caller


def ingest(db: Database, settings: Settings, org_id: str, n: int, task: str = "qa") -> list[str]:
    """What POST /v1/trajectories does, one trajectory at a time; the runs it fired."""
    fired = []
    for _ in range(n):
        body = {**trajectory_body(uuid.uuid4().hex, task=task), "llmCalls": [
            {"model": "tiny-llama", "messages": [{"role": "user", "content": f"Say {uuid.uuid4().hex[:8]}"}],
             "response": "Said."}]}
        done = trajectories.ingest(db, org_id, trajectories.parse_body(body))
        fired += [r.id for r in auto_training.after_ingest(db, settings, org_id, done.tasks)]
    return fired


def _ingest_in_a_process(settings: Settings, org_id: str, rounds: list[Any], out: Any) -> None:
    """EACH trajectories as soon as each round's event is set; the runs fired in each, on `out`."""
    db = Database(make_engine(settings))
    try:
        out.put("ready")
        for start in rounds:
            start.wait(timeout=240)
            out.put(ingest(db, settings, org_id, EACH))
    finally:
        db.dispose()


class Race:
    """PROCESSES processes, started once (spawning is the slow part), that ingest at once per round."""

    def __init__(self, settings: Settings, org_id: str, rounds: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.rounds, self.out = [context.Event() for _ in range(rounds)], context.Queue()
        self.procs = [context.Process(target=_ingest_in_a_process, args=(settings, org_id, self.rounds, self.out))
                      for _ in range(PROCESSES)]
        for p in self.procs:
            p.start()
        # Every process imported and connected before the first round: they ingest at once.
        assert [self.out.get(timeout=240) for _ in self.procs] == ["ready"] * PROCESSES

    def run(self, number: int) -> list[str]:
        """Let round `number` go; the runs its processes fired together."""
        self.rounds[number].set()
        return [run for _ in self.procs for run in self.out.get(timeout=240)]

    def join(self) -> None:
        for p in self.procs:
            p.join(timeout=60)
            assert p.exitcode == 0


def counts(db: Database, org_id: str) -> tuple[int, int]:
    with db.read() as session:
        datasets = session.scalar(select(func.count()).select_from(Dataset).where(
            Dataset.org_id == org_id, Dataset.name.like("auto-training-%")))
        jobs = session.scalar(select(func.count()).select_from(Job).where(Job.org_id == org_id))
    return datasets or 0, jobs or 0


def test_four_processes_crossing_the_threshold_fire_once_per_crossing(db: Database, settings: Settings) -> None:
    caller = configure(db, settings)
    race = Race(settings, caller.org_id, rounds=2)
    fired = race.run(0)
    assert len(fired) == 1 and counts(db, caller.org_id) == (1, 1)
    [run] = auto_training.history(db, caller.org_id)
    assert run["status"] == "submitted" and run["jobId"] and run["window"] == 1
    assert run["reason"]["threshold"] == 10 and run["reason"]["new_completed_trajectories"] >= 10
    fired_again = race.run(1)  # 12 more: the second window crosses once more
    race.join()
    assert len(fired_again) == 1 and counts(db, caller.org_id) == (2, 2)
    assert [r["window"] for r in auto_training.history(db, caller.org_id)] == [2, 1]


def test_a_run_left_by_a_dead_process_is_finished_once(db: Database, settings: Settings) -> None:
    caller = configure(db, settings)
    assert ingest(db, settings, caller.org_id, 9) == []
    trajectories.ingest(db, caller.org_id, trajectories.parse_body(trajectory_body("tenth", task="qa")))
    # The process fires the window, then dies before it builds or submits anything:
    run = store.try_fire(db, caller.org_id, "qa", threshold=10, cooldown_hours=0)
    assert run is not None and counts(db, caller.org_id) == (0, 0)
    assert auto_training.recover(db, settings, caller.org_id, older_than=timedelta(minutes=10)) == []  # not stale yet
    # Two processes restart and both find it stale; and the original one, alive after all, finishes it too:
    assert auto_training.recover(db, settings, caller.org_id, older_than=timedelta(0)) == [run.id]
    assert auto_training.recover(db, settings, caller.org_id, older_than=timedelta(0)) == []
    auto_training.complete(db, settings, run)
    assert counts(db, caller.org_id) == (1, 1)
    assert ingest(db, settings, caller.org_id, 1) == []  # the window is consumed: nothing fires again
    assert [r["status"] for r in auto_training.history(db, caller.org_id)] == ["submitted"]


def test_a_start_up_finishes_what_a_dead_process_left(db: Database, settings: Settings) -> None:
    caller = configure(db, settings)
    trajectories.ingest(db, caller.org_id, trajectories.parse_body(
        {"trajectories": [trajectory_body(f"t{i}", task="qa") for i in range(10)]}))
    run = store.try_fire(db, caller.org_id, "qa", threshold=10, cooldown_hours=0, now=utcnow() - timedelta(minutes=2))
    assert run is not None
    assert auto_training.recover_unfinished(db, settings) == [run.id]
    assert auto_training.recover_unfinished(db, settings) == [] and counts(db, caller.org_id) == (1, 1)


def test_within_the_cooldown_nothing_fires(db: Database, settings: Settings) -> None:
    caller = configure(db, settings, cooldown_hours=1)
    assert len(ingest(db, settings, caller.org_id, 10)) == 1
    assert ingest(db, settings, caller.org_id, 12) == []  # past the threshold again, but within the hour
    assert counts(db, caller.org_id) == (1, 1)
    later = store.try_fire(db, caller.org_id, "qa", threshold=10, cooldown_hours=1, now=utcnow() + timedelta(hours=2))
    assert later is not None and later.reason["new_completed_trajectories"] == 12


def test_disabled_nothing_fires_and_tasks_count_apart(db: Database, settings: Settings) -> None:
    off = configure(db, settings, enabled=False)
    assert ingest(db, settings, off.org_id, 12) == [] and counts(db, off.org_id) == (0, 0)
    on = configure(db, settings)
    assert ingest(db, settings, on.org_id, 6, task="a") + ingest(db, settings, on.org_id, 6, task="b") == []
    assert len(ingest(db, settings, on.org_id, 4, task="a")) == 1


def test_the_config_is_checked_whole_and_has_documented_defaults(db: Database, settings: Settings) -> None:
    tenant = make_tenant(db, "defaults")
    assert auto_training.get_config(db, tenant.org_id).model_dump(by_alias=True) == {
        "enabled": False, "threshold": 100, "cooldownHours": 24.0, "jobTemplate": {}, "activateIfBetter": False}
    caller = Principal(tenant.org_id, tenant.key_id, False)
    with pytest.raises(InvalidRequest) as bad:
        auto_training.put_config(db, settings, caller, {"enabled": True, "threshold": 0, "cooldownHours": -1,
                                                        "jobTemplate": {"base_model": "no-such-model"}})
    assert sorted(p["field"] for p in bad.value.problems) == ["cooldownHours", "threshold"]
    with pytest.raises(InvalidRequest) as bad:
        auto_training.put_config(db, settings, caller, {"enabled": True, "jobTemplate": {"base_model": "no-such"}})
    assert [p["field"] for p in bad.value.problems] == ["jobTemplate.base_model"]
    assert auto_training.get_config(db, tenant.org_id) == auto_training.DEFAULTS  # nothing stored


def test_a_revoked_key_submits_nothing_more(db: Database, settings: Settings) -> None:
    caller = configure(db, settings)
    tenancy.revoke_api_key(db, caller.org_id, caller.key_id)
    assert len(ingest(db, settings, caller.org_id, 10)) == 1  # the window fires and is recorded ...
    [run] = auto_training.history(db, caller.org_id)
    assert run["status"] == "failed" and "revoked" in run["error"]["message"]
    assert counts(db, caller.org_id)[1] == 0  # ... but no job is made as a key that may no longer act


def test_a_job_template_may_name_a_template(db: Database, settings: Settings) -> None:
    tenant = make_tenant(db, "templated")
    caller = Principal(tenant.org_id, tenant.key_id, False)
    auto_training.put_config(db, settings, caller, {"enabled": True, "threshold": 10, "cooldownHours": 0,
                                                    "jobTemplate": {"template": "lora-chat", "base_model": "tiny-llama",
                                                                    "hyperparams": {"max_steps": 2}}})
    assert len(ingest(db, settings, caller.org_id, 10)) == 1 and counts(db, caller.org_id) == (1, 1)
    with pytest.raises(InvalidRequest) as bad:
        auto_training.put_config(db, settings, caller, {"enabled": True, "jobTemplate": {"template": "no-such"}})
    assert sorted(p["field"] for p in bad.value.problems) == ["jobTemplate.base_model", "jobTemplate.template"]
