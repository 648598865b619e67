"""Claims: atomic, oldest first, each queued job to exactly one worker."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select

from tuneyard.scheduler import claim, queue_depth, queue_position
from tuneyard.scheduler.queue import queue_positions
from tuneyard.store import Database
from tuneyard.store.tables import Job, JobEvent

WORKERS = 8
JOBS = 500


def test_eight_workers_racing_over_500_jobs_claim_each_exactly_once(
    db: Database, open_db: Callable[[], Database], new_job: Callable[..., str]
) -> None:
    queued = {new_job() for _ in range(JOBS)}
    claimed: list[list[str]] = [[] for _ in range(WORKERS)]
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS)

    def work(i: int) -> None:
        own = open_db()  # its own engine and connections, as a worker process would have
        try:
            start.wait()
            while (job := claim(own, f"w{i}", lease_seconds=60)) is not None:
                assert job.attempt == 1
                claimed[i].append(job.job_id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    everything = [j for per_worker in claimed for j in per_worker]
    assert len(everything) == JOBS and set(everything) == queued
    assert sum(1 for per_worker in claimed if per_worker) > 1, "no concurrency happened"
    with db.read() as session:
        rows = session.execute(select(Job.status, Job.attempt, Job.worker_id)).all()
        claims = session.execute(
            select(JobEvent.job_id, func.count()).where(JobEvent.type == "claimed").group_by(JobEvent.job_id)
        ).all()
    assert Counter((r.status, r.attempt) for r in rows) == {("starting", 1): JOBS}
    assert all(count == 1 for _, count in claims) and len(claims) == JOBS
    owner = {j: f"w{i}" for i, per_worker in enumerate(claimed) for j in per_worker}
    with db.read() as session:
        assert all(owner[r.id] == r.worker_id for r in session.execute(select(Job.id, Job.worker_id)))


def test_claims_take_the_oldest_queued_job_first(db: Database, new_job: Callable[..., str]) -> None:
    ids = [new_job() for _ in range(5)]
    assert queue_depth(db) == 5
    assert [queue_position(db, j) for j in ids] == [1, 2, 3, 4, 5]
    first = claim(db, "w", 30)
    assert first is not None and first.job_id == ids[0]
    assert queue_position(db, ids[0]) is None and queue_position(db, ids[1]) == 1
    with db.read() as session:  # the list's one statement for many agrees with the one for one
        assert queue_positions(session, ids) == {j: queue_position(db, j) for j in ids[1:]}
    assert [c.job_id for c in iter(lambda: claim(db, "w", 30), None)] == ids[1:]
    assert queue_depth(db) == 0
    assert claim(db, "w", 30) is None
