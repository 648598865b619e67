"""Job admission's per-user sliding-window limit holds across processes sharing one database,
and a replayed request spends none of it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import func, select

from tuneyard.store import Database, tenancy
from tuneyard.store.admission import Admission, admit_job
from tuneyard.store.ids import utcnow
from tuneyard.store.jobs import NewJob
from tuneyard.store.tables import Job


def admit(db: Database, org_id: str, subject: str, limit: int, *, now: datetime | None = None,
          key_id: str | None = None, idempotency_key: str | None = None) -> Admission:
    new = NewJob(org_id=org_id, type="finetune", spec={"base_model": "tiny-llama"}, config={"steps": 10},
                 user_key_id=key_id, idempotency_key=idempotency_key)
    return admit_job(db, new, "body-hash", subject=subject, limit=limit, window_s=60, now=now)


def jobs_in(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def test_n_per_window_then_refused_with_retry_after_across_two_engines(
    db: Database, open_db: Callable[[], Database], org_id: str
) -> None:
    api_a, api_b = db, open_db()
    t0 = utcnow()
    admitted = [admit((api_a, api_b)[i % 2], org_id, "key_1", 5, now=t0 + timedelta(seconds=i)) for i in range(5)]
    assert [(a.created, a.decision.allowed, a.decision.remaining) for a in admitted] == [
        (True, True, 4), (True, True, 3), (True, True, 2), (True, True, 1), (True, True, 0)]
    refused = admit(api_b, org_id, "key_1", 5, now=t0 + timedelta(seconds=10))
    assert (refused.job, refused.created) == (None, False)
    decision = refused.decision
    assert (decision.allowed, decision.remaining, decision.retry_after_s, decision.reset_after_s) == (False, 0, 50, 54)
    assert admit(api_a, org_id, "key_2", 5, now=t0).created  # another user has their own window
    # The oldest hit leaves the window: one more is allowed, then refused again.
    assert admit(api_a, org_id, "key_1", 5, now=t0 + timedelta(seconds=60.5)).created
    again = admit(api_b, org_id, "key_1", 5, now=t0 + timedelta(seconds=60.7))
    assert (again.job, again.decision.retry_after_s) == (None, 1)  # the hit at t0+1 leaves at t0+61
    assert jobs_in(db) == 7


def test_concurrent_requests_never_admit_more_than_the_limit(
    db: Database, open_db: Callable[[], Database], org_id: str
) -> None:
    engines = [db, open_db(), open_db()]
    created: list[bool] = []
    start = threading.Barrier(30)

    def go(i: int) -> None:
        start.wait()
        created.append(admit(engines[i % 3], org_id, "key_x", 20).created)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(created) == [False] * 10 + [True] * 20
    assert jobs_in(db) == 20


def test_a_replayed_request_returns_its_job_and_spends_no_quota(db: Database, org_id: str) -> None:
    key, _ = tenancy.create_api_key(db, org_id, "ci")
    first = admit(db, org_id, "key_r", 2, key_id=key.id, idempotency_key="k-1")
    replay = admit(db, org_id, "key_r", 2, key_id=key.id, idempotency_key="k-1")
    assert first.created and not replay.created
    assert first.job is not None and replay.job is not None and replay.job.id == first.job.id
    assert (first.decision.remaining, replay.decision.remaining) == (1, 1)
    assert admit(db, org_id, "key_r", 2, key_id=key.id, idempotency_key="k-2").decision.remaining == 0
    assert admit(db, org_id, "key_r", 2, key_id=key.id, idempotency_key="k-3").job is None
    at_limit = admit(db, org_id, "key_r", 2, key_id=key.id, idempotency_key="k-1")  # a replay is never refused
    assert at_limit.job is not None and at_limit.job.id == first.job.id
    assert jobs_in(db) == 2
