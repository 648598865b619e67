"""Every pair of statuses, on each database: allowed moves happen with their event, others do not."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import func, select, update

from tuneyard.store import Database
from tuneyard.store.errors import InvalidTransition, StaleAttempt
from tuneyard.store.status import TRANSITIONS, Event, JobStatus, transition
from tuneyard.store.tables import Job, JobEvent


def _force(db: Database, job_id: str, status: JobStatus) -> None:
    with db.write() as session:
        session.execute(update(Job).where(Job.id == job_id).values(status=status.value, attempt=1))


def _state(db: Database, job_id: str) -> tuple[str, int]:
    with db.read() as session:
        current = session.scalar(select(Job.status).where(Job.id == job_id))
        events = session.scalar(select(func.count()).where(JobEvent.job_id == job_id))
    return str(current), int(events or 0)


def test_every_allowed_transition_works_and_every_other_is_refused(
    db: Database, new_job: Callable[..., str]
) -> None:
    for origin in JobStatus:
        job_id = new_job()
        for target in JobStatus:
            _force(db, job_id, origin)
            _, before = _state(db, job_id)
            if target in TRANSITIONS[origin]:
                with db.write() as session:
                    transition(session, job_id, target, Event("test", f"{origin}->{target}"))
                assert _state(db, job_id) == (target.value, before + 1), (origin, target)
            else:
                with pytest.raises(InvalidTransition) as refused, db.write() as session:
                    transition(session, job_id, target, Event("test", "refused"))
                assert refused.value.current == origin.value
                assert _state(db, job_id) == (origin.value, before), (origin, target)


def test_a_transition_with_a_stale_attempt_is_refused(db: Database, new_job: Callable[..., str]) -> None:
    job_id = new_job()
    _force(db, job_id, JobStatus.RUNNING)
    with pytest.raises(StaleAttempt), db.write() as session:
        transition(session, job_id, JobStatus.FINALIZING, Event("t", "t"), attempt=0)
    with db.write() as session:
        transition(session, job_id, JobStatus.FINALIZING, Event("t", "t"), attempt=1)
    with db.read() as session:
        event = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.seq.desc())).first()
    assert event is not None and event.data["status"] == "finalizing" and event.seq == 2
